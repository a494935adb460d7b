"""Hub-side pieces used by hub_config/jupyterhub_config.py: spawners, profiles, OIDC login."""
