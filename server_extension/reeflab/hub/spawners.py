"""Spawners of ReefLab user servers: local processes on one machine, KubeSpawner at scale."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from pathlib import Path

import psutil
from jupyterhub.spawner import SimpleLocalProcessSpawner
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Unicode, default

from .. import accounts
from ..errors import ReefLabError
from ..limits import Cgroup
from ..profiles import ProfileStore, default_profiles_path
from ..storage.kubernetes import render_mounts
from ..storage.rclone import remote_env
from ..storage.store import ConnectionStore
from .profile_list import PROFILE_TRAITS, kubespawner_profiles, user_groups


class ReefLabLocalSpawner(SimpleLocalProcessSpawner):
    """One local single-user server per hub user, in its own home directory (mode 0700).

    When the hub runs as root (`isolate_users`, on by default there), each hub user gets their
    own OS account (`reeflab.accounts`), created at first spawn, and their server, kernels,
    terminals, deployments, jobs and mounts run under it: the kernel keeps people apart.
    Without root every server runs under the hub's account; `configure_local` then allows one
    user only, unless the operator accepts shared-account mode (README, "Who is isolated").
    """

    home_dir_template = Unicode(
        config=True,
        help="Home of each user; {username} is expanded. Default: $REEFLAB_STATE_DIR/homes/{username}.",
    )
    isolate_users = Bool(
        config=True,
        help="Run each user's server under their own OS account (needs root and useradd). "
        "Default: on when the hub runs as root.",
    )

    @default("home_dir_template")
    def _default_home_dir_template(self) -> str:
        state = os.environ.get("REEFLAB_STATE_DIR", str(Path.cwd() / ".reeflab"))
        return str(Path(state) / "homes" / "{username}")

    @default("isolate_users")
    def _default_isolate_users(self) -> bool:
        return accounts.isolation_available()

    @property
    def account(self) -> accounts.SystemAccount | None:
        """The OS account the server runs under (None: the hub's own)."""
        return getattr(self, "_account", None)

    async def start(self):
        if self.isolate_users:
            self._account = await asyncio.to_thread(self._prepare_account)
        return await super().start()

    def _prepare_account(self) -> accounts.SystemAccount:
        """Create the user's account and home; refuse with words an operator can act on."""
        home = Path(self.home_dir)
        blocked = accounts.unreachable_parent(home) or accounts.unreachable_parent(Path(sys.executable))
        if blocked is not None:
            raise web.HTTPError(
                500,
                f"users' accounts cannot enter {blocked}, on the way to their homes or to ReefLab's Python: "
                f"allow them through it (chmod o+x {blocked}) or move ReefLab/REEFLAB_HOMES elsewhere",
            )
        account = accounts.ensure_account(self.user.name, home)
        self.log.info("server of %s runs as OS account %s (uid %d)", self.user.name, account.name, account.uid)
        # the user's cgroup (limits: Spawner.mem_limit / cpu_limit), delegated: their deployments and jobs
        # get cgroups of their own inside it. Found again at a respawn: what runs in it keeps running.
        memory = self.mem_limit or psutil.virtual_memory().total  # unset: the machine's, but a cgroup all the same
        group = Cgroup.ensure(f"user-{account.name}", memory, self.cpu_limit or float(os.cpu_count() or 1))
        self._cgroup = group.delegate(account.uid, account.gid) if group is not None else None
        return account

    def make_preexec_fn(self, name):
        home, account, cgroup = self.home_dir, self.account, getattr(self, "_cgroup", None)

        def preexec():
            if cgroup is not None:
                cgroup.enter()
            if account is not None:  # root: become the user (home made and chowned in start)
                os.setgroups([])
                os.setgid(account.gid)
                os.setuid(account.uid)
            else:
                os.makedirs(home, 0o700, exist_ok=True)
                os.chmod(home, 0o700)
            os.umask(0o077)  # what the user makes is theirs alone unless they say otherwise
            os.chdir(home)

        return preexec

    def user_env(self, env: dict) -> dict:
        env = super().user_env(env)
        if self.account is not None:
            env.update(self.account.env())
        # Ultralytics writes settings and a font in its config dir: each user their own
        env["YOLO_CONFIG_DIR"] = str(Path(self.home_dir) / ".config" / "Ultralytics")
        return env

    def get_args(self) -> list[str]:
        args = super().get_args()
        if os.geteuid() == 0 and self.account is None:
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
    storage_root = Unicode(
        "",
        config=True,
        help="Folder where the hub reads users' storage connections (a volume user servers keep them on, "
        "their StorageService.root_dir); connections a user mounted get rclone sidecars. Empty: none.",
    )
    storage_home = Unicode("/home/jovyan", config=True, help="Home in the pod: mounts are at <home>/storage/<name>")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._baseline = {name: copy.deepcopy(getattr(self, name)) for name in PROFILE_TRAITS}
        self._storage_secret: dict | None = None
        self._storage_added: dict[str, list] = {}  # what the last spawn added, taken out on the next

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
        self.add_storage_mounts()

    def add_storage_mounts(self) -> None:
        """The user's mounted connections as rclone sidecars (the Secret is made in _start, before the pod)."""
        for name, added in self._storage_added.items():  # a respawn: the previous mounts may be gone
            setattr(self, name, [item for item in getattr(self, name) if item not in added])
        self._storage_added, self._storage_secret = {}, None
        if not self.storage_root:
            return
        store = ConnectionStore(self.storage_root)
        connections = [c for c in store.load(self.user.name).values() if c.mounted]
        spec = render_mounts(self.user.name, connections, remote_env, namespace=self.namespace, home=self.storage_home)
        self._storage_added = {
            "extra_containers": spec.extra_containers,
            "volumes": spec.volumes,
            "volume_mounts": spec.volume_mounts,
        }
        for name, added in self._storage_added.items():
            setattr(self, name, [*getattr(self, name), *added])
        self._storage_secret = spec.secret if connections else None
        if connections:
            self.log.info("mounting storage %s of %s", ", ".join(c.name for c in connections), self.user.name)

    async def apply_storage_secret(self) -> None:
        """Create or replace the user's storage Secret (credentials never go in the pod spec)."""
        secret = self._storage_secret
        if secret is None:
            return
        name = secret["metadata"]["name"]
        try:
            await self.api.create_namespaced_secret(self.namespace, secret)
        except ApiException as err:
            if err.status != 409:
                raise
            await self.api.replace_namespaced_secret(name, self.namespace, secret)

    async def _start(self):
        await self.apply_storage_secret()
        return await super()._start()
