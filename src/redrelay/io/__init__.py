"""Thin I/O layers: the only modules that import redis. They send what ``protocol`` decides."""
