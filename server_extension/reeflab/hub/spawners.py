"""Spawners of ReefLab user servers: local processes on one machine, KubeSpawner at scale."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Unicode, default

from ..errors import ReefLabError
from ..profiles import ProfileStore, default_profiles_path
from .profile_list import PROFILE_TRAITS, kubespawner_profiles, user_groups


class ReefLabLocalSpawner(SimpleLocalProcessSpawner):
    """One local single-user server per hub user, each in its own home directory (mode 0700).

    All servers run under the hub's OS account: homes are separate folders, not separate
    accounts. For OS-level isolation between people sharing a machine, use JupyterHub's
    LocalProcessSpawner with system accounts (see README, "Local mode").
    """

    home_dir_template = Unicode(
        config=True,
        help="Home of each user; {username} is expanded. Default: $REEFLAB_STATE_DIR/homes/{username}.",
    )

    @default("home_dir_template")
    def _default_home_dir_template(self) -> str:
        state = os.environ.get("REEFLAB_STATE_DIR", str(Path.cwd() / ".reeflab"))
        return str(Path(state) / "homes" / "{username}")

    def make_preexec_fn(self, name):
        home = self.home_dir

        def preexec():
            os.makedirs(home, 0o700, exist_ok=True)
            os.chmod(home, 0o700)
            os.chdir(home)

        return preexec

    def get_args(self) -> list[str]:
        args = super().get_args()
        if os.geteuid() == 0:
            args.append("--allow-root")
        return args

    def get_env(self) -> dict:
        env = super().get_env()
        env.setdefault("REEFLAB_PROFILES_FILE", str(default_profiles_path()))
        return env


class ReefLabKubeSpawner(KubeSpawner):
    """KubeSpawner whose profiles come from profiles.yaml and are gated by group.

    Two fixes over plain KubeSpawner: a profile the user may not use is refused with a
    message that says why (not "No such profile"), and the traits a profile sets are
    reset before each spawn, so a CPU profile never inherits an earlier GPU request
    (KubeSpawner merges dict overrides into the live spawner).
    """

    profiles_file = Unicode(config=True, help="Hardware profiles file (hub_config/profiles.yaml format)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._baseline = {name: copy.deepcopy(getattr(self, name)) for name in PROFILE_TRAITS}

    @property
    def profile_store(self) -> ProfileStore:
        if getattr(self, "_profile_store", None) is None:
            self._profile_store = ProfileStore(self.profiles_file or default_profiles_path())
        return self._profile_store

    @default("profile_list")
    def _default_profile_list(self):
        # a callable profile_list: each user is offered only the profiles of their groups
        return lambda spawner: kubespawner_profiles(spawner.profile_store.catalog(), user_groups(spawner))

    async def load_user_options(self):
        for name, value in self._baseline.items():
            setattr(self, name, copy.deepcopy(value))
        slug = (self.user_options or {}).get("profile")
        try:
            profile = self.profile_store.catalog().choose(slug, user_groups(self))
        except ReefLabError as err:
            error = web.HTTPError(err.status, err.message)
            error.jupyterhub_message = err.message
            raise error from None
        self.user_options = {**(self.user_options or {}), "profile": profile.slug}
        self.environment = {**self.environment, "REEFLAB_PROFILE": profile.slug}
        await super().load_user_options()
