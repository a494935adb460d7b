"""ReefLab's local OSCAR-compatible engine: its own process (`python -m reeflab.oscar_engine`), a JupyterHub service.

Layers: `routes` and `routes_v4` (HTTP, OSCAR's REST routes) -> `engine` (services, invocations, jobs; no
tornado) -> `pool` (warm worker processes, `worker`) and `store` (sqlite queue). Upload triggers and
batch slices build on `OscarEngine.submit` and the job store. It reads service definitions with
reeflab.serverless.fdl and invocations with reeflab.serverless.invocations; nothing outside imports it
but the hub's config (which starts it) and tests (testing.EngineProcess).
"""
