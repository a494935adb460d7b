"""Module quality checks: what a maintainer would want to know before listing a module (metadata, DEEPaaS API,
tests, style, security, Dockerfile, licence, resources), run by `reeflab module check` or `python -m reeflab.checks`."""
