"""Platform information and hardware profiles."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import __version__
from .base import ReefLabHandler


class InfoHandler(ReefLabHandler):
    """GET /reeflab/api/info: version, who you are, and which backends this server uses."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        identity = self.services.identity
        self.write_json(
            {
                "version": __version__,
                "user": self.username,
                "groups": self.groups,
                "hub": identity.hub_api_url,
                "backends": {
                    "identity": _class_path(identity),
                    "profiles": str(self.services.profiles.path),
                    "deployments": _class_path(self.services.deployments.backend),
                },
                "deployments": self.services.deployments.limits(),
            }
        )


class ProfilesHandler(ReefLabHandler):
    """GET /reeflab/api/profiles: the hardware profiles the current user may use."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        catalog = self.services.profiles.catalog()
        allowed = catalog.allowed(self.groups)
        default = catalog.choose(None, self.groups).slug if allowed else None
        self.write_json(
            {
                "default": default,
                "profiles": [{**p.public_model(), "image": catalog.image_of(p)} for p in allowed],
            }
        )


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
