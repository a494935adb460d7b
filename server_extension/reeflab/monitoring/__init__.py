"""Monitoring of deployments: request metrics counted at the authenticated route, and drift of their inputs."""
