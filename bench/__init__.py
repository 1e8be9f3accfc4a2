"""The benchmark harness (``bench/run``): redrelay against raw redis-py and its peers.

It stands apart from the test suite and from the package; see ``docs/benchmarks.md``.
"""
