"""Who the current user is, as far as ReefLab cares: name and JupyterHub groups (VOs)."""

from __future__ import annotations

import os

from traitlets import List, Unicode, default
from traitlets.config import LoggingConfigurable


class HubIdentity(LoggingConfigurable):
    """Groups come from the hub's identify model (/hub/api/user always carries them).

    Outside a hub (a plain `jupyter lab`), every user has `standalone_groups`.
    """

    hub_api_url = Unicode(allow_none=True, help="JupyterHub API URL, from the spawner's environment")

    @default("hub_api_url")
    def _default_hub_api_url(self) -> str | None:
        return os.environ.get("JUPYTERHUB_API_URL")

    standalone_groups = List(
        Unicode(), config=True, help="Groups of the user when the server does not run under JupyterHub."
    )

    def groups(self, user: object) -> list[str]:
        hub_user = getattr(user, "hub_user", None)
        if hub_user is None:
            return list(self.standalone_groups)
        return sorted(hub_user.get("groups") or [])
