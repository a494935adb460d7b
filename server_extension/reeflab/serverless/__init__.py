"""Serverless: ReefLab's local OSCAR-compatible engine (a JupyterHub service).

Layers: `handlers` (HTTP, OSCAR's REST routes) -> `engine` (services, invocations, jobs; no
tornado) -> `pool` (warm worker processes, `worker`) and `store` (sqlite queue). Upload
triggers and the batch coordinator build on `OscarEngine.submit` and the job store.
"""
