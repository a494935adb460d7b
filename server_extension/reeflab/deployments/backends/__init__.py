"""Where deployments run: local processes (one machine) or Kubernetes (at scale)."""
