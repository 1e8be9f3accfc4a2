"""One small app per system, each with a no-op handler that calls ``bench._common.tick``.

Every app reads its Redis URL from ``$BENCH_REDIS_URL``; see ``docs/benchmarks.md`` for the
configuration each one runs with and why.
"""
