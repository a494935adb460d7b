"""Serverless from the user's side: OSCAR service definitions (fdl), the batch coordinator, the user
server's gateway to the engine.

All of it speaks the OSCAR API to any endpoint: a real OSCAR cluster, or ReefLab's local engine
(reeflab.oscar_engine, its own process), which builds on `fdl` and `invocations` from here.
"""
