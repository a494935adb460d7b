"""The module contract (DEEPaaS v2) and ReefLab's built-in modules."""
