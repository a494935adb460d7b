"""Who the current user is, as far as ReefLab cares: name and JupyterHub groups (VOs)."""

from __future__ import annotations

import getpass
import os

from traitlets import List, Unicode, default
from traitlets.config import LoggingConfigurable


class HubIdentity(LoggingConfigurable):
    """Groups come from the hub's identify model (/hub/api/user always carries them).

    Outside a hub (a plain `jupyter lab`) the server has one owner, `standalone_name`, whose
    groups are `standalone_groups` (jupyter-server names token users anew on each request).
    """

    hub_api_url = Unicode(allow_none=True, help="JupyterHub API URL, from the spawner's environment")

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str | None:
        return os.environ.get("JUPYTERHUB_API_URL")

    standalone_name = Unicode(
        config=True,
        help="Owner of everything when not under JupyterHub (default: the OS account running the server).",
    )

    @default("standalone_name")
    def _default_standalone_name(self) -> str:
        return getpass.getuser()

    standalone_groups = List(
        Unicode(), config=True, help="Groups of the user when the server does not run under JupyterHub."
    )

    def name(self, user: object) -> str:
        """The stable owner name of a request's user (a plain Jupyter server has one owner)."""
        hub_user = getattr(user, "hub_user", None)
        return hub_user["name"] if hub_user else self.standalone_name

    def groups(self, user: object) -> list[str]:
        hub_user = getattr(user, "hub_user", None)
        if hub_user is None:
            return list(self.standalone_groups)
        return sorted(hub_user.get("groups") or [])
