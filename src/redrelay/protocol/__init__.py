"""Sans-I/O core: key names, Lua scripts, the entry format and the rules of each transition.

Nothing in this package imports redis, socket, threading, asyncio or a web framework, so the
sync and async I/O layers (and any future one) share every decision made here.
"""
