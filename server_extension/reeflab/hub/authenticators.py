"""The hub's login classes, with what ReefLab adds to any of them: deleting a hub user revokes their accounts.

JupyterHub calls `Authenticator.delete_user` when an admin deletes a user (REST API or admin panel), and
`add_user` for every user at start: the first is where everything of the user is revoked (hub/revoke.py),
the second starts, once, the reconcile that catches what was deleted while a part was down.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from firstuseauthenticator import FirstUseAuthenticator
from jupyterhub import orm
from jupyterhub.auth import Authenticator
from sqlalchemy.orm import object_session
from traitlets import Bool, Unicode

from .. import generations
from .revoke import Targets, reconcile, revoke_user


class RevokingAuthenticator(Authenticator):
    """Revokes a deleted user's accounts everywhere: the serverless engine, MLflow, their OS account and home.

    Configured by hub/config.py in local mode (where those accounts exist); with nothing configured,
    deleting a user does what the base authenticator does.
    """

    serverless_url = Unicode("", config=True, help="The serverless engine's base URL, reached directly")
    serverless_token_file = Unicode("", config=True, help="File with the engine's service token (0600)")
    tracking_url = Unicode("", config=True, help="The MLflow tracking server's URL")
    tracking_state_dir = Unicode("", config=True, help="The MLflow state folder (admin password, account store)")
    homes_dir = Unicode("", config=True, help="Where users' homes are (<homes_dir>/<name>): moved aside on deletion")
    os_accounts = Bool(False, config=True, help="Users have OS accounts (the hub runs as root): delete them")
    label_studio_admin_database = Unicode(
        "", config=True, help="PostgreSQL admin URL of users' Label Studio databases (dropped with the user)"
    )
    reconcile_at_start = Bool(True, config=True, help="At start, revoke accounts of users the hub no longer has")

    _reconcile_task: asyncio.Task | None = None

    def revocation_targets(self) -> Targets:
        """Where this hub's users have accounts (as hub/config.py set them)."""
        return Targets(
            serverless_url=self.serverless_url,
            serverless_token_file=self.serverless_token_file,
            tracking_url=self.tracking_url,
            tracking_state_dir=self.tracking_state_dir,
            homes_dir=self.homes_dir,
            os_accounts=self.os_accounts,
            label_studio_admin_database=self.label_studio_admin_database,
        )

    async def delete_user(self, user: Any) -> None:
        """The hub deletes `user`: their login goes (the parent class), then everything ReefLab gave them."""
        result = super().delete_user(user)
        if inspect.isawaitable(result):
            await result
        generation = generations.generation(getattr(user, "created", None))
        await asyncio.to_thread(revoke_user, user.name, self.revocation_targets(), generation, self.log)

    def add_user(self, user: Any) -> Any:
        """Called for every user at start (and for each new one): the first call starts the reconcile."""
        result = super().add_user(user)
        if self.reconcile_at_start and self._reconcile_task is None:
            session = object_session(getattr(user, "orm_user", user))
            if session is not None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    self._reconcile_task = loop.create_task(self._reconcile(session))
        return result

    async def _reconcile(self, session: Any) -> None:
        """Once the hub's users are all loaded: revoke OS and MLflow accounts of users it no longer has."""
        await asyncio.sleep(1)  # after init_users has gone through every user
        users = {u.name: generations.generation(u.created) for u in session.query(orm.User)}
        try:
            revoked = await asyncio.to_thread(reconcile, users, self.revocation_targets(), 300, self.log)
        except Exception:
            self.log.exception("could not reconcile the accounts of deleted users")
            return
        if any(revoked.values()):
            self.log.warning("revoked accounts of deleted users at start: %s", revoked)
        else:
            self.log.info("no account of a deleted user left (%d hub users checked)", len(users))


class ReefLabFirstUseAuthenticator(RevokingAuthenticator, FirstUseAuthenticator):
    """Local logins (an admin adds users, each sets a password at first login), revoking deleted users' accounts."""

    def delete_user(self, user: Any):
        """FirstUseAuthenticator forgets the password; the base class also forgets the name as allowed."""
        self.allowed_users.discard(user.name)
        return super().delete_user(user)
