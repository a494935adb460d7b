# ReefLab JupyterHub configuration. Everything is set by reeflab.hub.config from REEFLAB_*
# environment variables (README: "Configuration"); put site-specific overrides below it.
#   REEFLAB_MODE=local|kubernetes   REEFLAB_AUTH=local|oidc
from reeflab.hub.config import configure

c = get_config()  # noqa: F821 (provided by JupyterHub)
configure(c)
