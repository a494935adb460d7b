"""HTTP handlers: parse the request, call a service, write the answer. Nothing else."""
