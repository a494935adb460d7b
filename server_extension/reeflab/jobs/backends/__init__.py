"""Where notebook jobs run: a local detached process, or a Kubernetes Job."""
