"""Dedicated deployments and "try" deployments of modules, served by DEEPaaS."""

# sent by ReefLab's readiness checks (every second while a deployment starts or is watched); the
# deployment's access log leaves those requests out, so it shows what its callers did
HEALTH_CHECK_HEADER = "X-ReefLab-Health-Check"
