"""Dedicated deployments and "try" deployments of modules, served by DEEPaaS."""
