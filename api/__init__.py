"""slurp's HTTP API: collections, jobs, runs, JWT authentication, Prometheus metrics.

Build an app with ``api.app.create_app(config, store, redis_client, queue_name)``; run
it with ``api.server.serve(...)`` (``slurp api``) or ``api.server.ApiServer`` (tests,
benchmarks). Nothing happens at import: no globals, no connections.
"""

__all__: list[str] = []
