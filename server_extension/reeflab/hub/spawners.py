"""Spawners of ReefLab user servers: local processes on one machine, KubeSpawner at scale."""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import subprocess
import sys
from pathlib import Path

import psutil
from jupyterhub.spawner import SimpleLocalProcessSpawner
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Dict, Enum, List, Unicode, default

from .. import accounts, generations
from ..errors import ReefLabError
from ..limits import Cgroup
from ..profiles import ProfileStore, default_profiles_path
from ..storage.kubernetes import MOUNT_MODES, render_mounts
from ..storage.rclone import remote_env
from ..storage.store import ConnectionStore
from . import kubernetes_isolation as isolation
from .kubernetes_isolation import (
    NAMESPACE_NAME,
    POD_SECURITY,
    PREFIX_MAX,
    SERVICE_ACCOUNT,
    SINGLEUSER_ACCESS,
    NamespaceRefused,
    UserNamespace,
    user_namespace,
)
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

    @default("popen_kwargs")
    def _default_popen_kwargs(self) -> dict:
        # not the hub's terminal: a Jupyter server with one answers SIGINT with a 5 s "Shutdown? (y/n)" prompt
        return {"stdin": subprocess.DEVNULL}

    @default("interrupt_timeout")
    def _default_interrupt_timeout(self) -> int:
        return 5  # JupyterHub waits 30 s for a server to stop after SIGINT, then 30 s after SIGTERM

    @default("term_timeout")
    def _default_term_timeout(self) -> int:
        return 5

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
        # an account left by a deleted user of the same name (an older generation) is retired first
        generation = generations.generation(getattr(self.user, "created", None))
        try:
            account = accounts.ensure_account(self.user.name, home, generation)
        except accounts.StaleGeneration as error:
            raise web.HTTPError(409, f"{error}: this user was deleted; an admin can tell more") from None
        self.log.info("server of %s runs as OS account %s (uid %d)", self.user.name, account.name, account.uid)
        # the user's cgroup (limits: Spawner.mem_limit / cpu_limit), delegated: their deployments and jobs
        # get cgroups of their own inside it. Found again at a respawn: what runs in it keeps running.
        memory = self.mem_limit or psutil.virtual_memory().total  # unset: the machine's, but a cgroup all the same
        group = Cgroup.ensure(f"user-{account.name}", memory, self.cpu_limit or float(os.cpu_count() or 1))
        self._cgroup = group.delegate(account.uid, account.gid) if group is not None else None
        return account

    async def stop(self, now: bool = False):
        # SIGTERM at once: a Jupyter server stops cleanly on it, while SIGINT (JupyterHub's first try)
        # leaves it "Interrupted..." until SIGTERM follows
        return await super().stop(now=True)

    async def stop_workloads(self, timeout: float = 60) -> list[str]:
        """Stop everything the user started (deployments, jobs, pipeline runs, Flower servers, mounts), as the
        platform stops: `python -m reeflab.workloads stop` under their account, in their home, with their
        server's environment; one line per thing stopped. Their server must have stopped first."""
        if not Path(self.home_dir).is_dir():
            return []
        if self.isolate_users:
            self._account = accounts.lookup(self.user.name)
            if self._account is None:  # never spawned here: nothing of theirs runs
                return []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": os.environ.get("LANG", "C.UTF-8")}
        env.update({k: v for k, v in self.environment.items() if isinstance(v, str)})
        env.update(self.user_env({}))
        env["JUPYTERHUB_USER"] = self.user.name
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reeflab.workloads", "stop",
            # not in the user's cgroup: one at its memory limit (or gone with its parent) must not stop the stop
            env=env, preexec_fn=_as_user(self.home_dir, self.account, None),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return [f"not everything stopped after {timeout:g} s"]
        lines = out.decode(errors="replace").splitlines()
        if process.returncode:
            why = (err.decode(errors="replace").strip().splitlines() or ["no reason given"])[-1]
            lines.append(f"could not stop everything: {why}")
        return lines

    def make_preexec_fn(self, name):
        return _as_user(self.home_dir, self.account, getattr(self, "_cgroup", None))

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


def _as_user(home: str, account: accounts.SystemAccount | None, cgroup: Cgroup | None):
    """A preexec_fn: into `cgroup`, then the user's account (or, without one, their private home made),
    umask 077 and their home as working folder."""

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


class ReefLabKubeSpawner(KubeSpawner):
    """KubeSpawner whose profiles come from profiles.yaml and are gated by group, one namespace per user.

    Two fixes over plain KubeSpawner: a profile the user may not use is refused with a
    message that says why (not "No such profile"), and the traits a profile sets are
    reset before each spawn, so a CPU profile never inherits an earlier GPU request
    (KubeSpawner merges dict overrides into the live spawner).

    Isolation (hub/kubernetes_isolation.py says why a namespace each): every user's server runs in
    `<user_namespace_prefix>-<user>`, made at spawn with a ServiceAccount whose Role reaches that
    namespace only, NetworkPolicies keeping other users' pods out, and Pod Security "restricted"
    (unless storage mounts are privileged sidecars); the server pod itself complies with it.
    """

    profiles_file = Unicode(config=True, help="Hardware profiles file (hub_config/profiles.yaml format)")
    storage_root = Unicode(
        "",
        config=True,
        help="Folder where the hub reads users' storage connections (a volume user servers keep them on, "
        "their StorageService.root_dir); the connections a user mounted are mounted in the pod. Empty: none.",
    )
    storage_home = Unicode("/home/jovyan", config=True, help="Home in the pod: mounts are at <home>/storage/<name>")
    storage_csi_driver = Unicode(
        "",
        config=True,
        help="CSI driver mounting rclone remotes as inline volumes (e.g. rclone.csi.veloxpack.io, installed with "
        "inline volumes enabled); setting it makes 'csi' the default storage_mount_mode",
    )
    storage_mount_mode = Enum(
        MOUNT_MODES,
        config=True,
        help="How mounted connections reach pods: 'csi' (storage_csi_driver, nothing privileged), 'sidecar' "
        "(privileged rclone sidecars: the user's namespace then allows privileged pods, i.e. users get root "
        "on nodes; trusted users only), 'none'. Default: 'csi' if storage_csi_driver is set, else 'none'.",
    )
    hub_namespace = Unicode(
        config=True, help="Namespace of the hub and proxy, whose pods may reach users' servers (default: this pod's)"
    )
    user_namespace_prefix = Unicode(
        config=True,
        help=f"Users' namespaces are <prefix>-<user> (at most {PREFIX_MAX} characters; default: hub_namespace, "
        "or 'reeflab' where that is 'default')",
    )
    server_ingress_from = List(
        Dict(),
        config=True,
        help="NetworkPolicy peers that may reach users' servers; default: the pods of hub_namespace labelled "
        "hub.jupyter.org/network-access-singleuser=true (the hub and proxy of Zero to JupyterHub)",
    )
    user_namespace_quota = Dict(
        config=True, help="`hard` of a ResourceQuota in each user's namespace, e.g. {'requests.nvidia.com/gpu': '2'}"
    )
    user_ingresses = Bool(
        False,
        config=True,
        help="Let users' ServiceAccounts create Ingresses (for KubernetesBackend.ingress_host). An Ingress may "
        "claim any host name its controller serves: allow it only where the controller restricts hosts.",
    )
    delete_user_namespace = Bool(
        True,
        config=True,
        help="When the hub deletes a user (and delete_pvc is on), delete their namespace: deployments, jobs, "
        "Secrets, home volume. Off: an admin must delete it; a new user of the same name is refused it meanwhile.",
    )

    @default("enable_user_namespaces")
    def _default_enable_user_namespaces(self) -> bool:
        return True

    @default("service_account")
    def _default_service_account(self) -> str | None:
        # one namespace for all (an operator's choice): no identity, no token, no Kubernetes API from kernels
        return SERVICE_ACCOUNT if self.enable_user_namespaces else None

    @default("automount_service_account_token")
    def _default_automount_service_account_token(self) -> bool:
        return bool(self.enable_user_namespaces)

    @default("container_security_context")
    def _default_container_security_context(self) -> dict:
        # Pod Security "restricted" (KubeSpawner adds runAsUser/runAsGroup from uid/gid)
        return {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    @default("pod_security_context")
    def _default_pod_security_context(self) -> dict:
        return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

    @default("storage_mount_mode")
    def _default_storage_mount_mode(self) -> str:
        return "csi" if self.storage_csi_driver else "none"

    @default("hub_namespace")
    def _default_hub_namespace(self) -> str:
        return self._namespace_default()

    @default("user_namespace_prefix")
    def _default_user_namespace_prefix(self) -> str:
        return self.hub_namespace if self.hub_namespace not in ("", "default") else "reeflab"

    @default("server_ingress_from")
    def _default_server_ingress_from(self) -> list[dict]:
        hub = {"matchLabels": {NAMESPACE_NAME: self.hub_namespace}}
        return [{"namespaceSelector": hub, "podSelector": {"matchLabels": dict(SINGLEUSER_ACCESS)}}]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._baseline = {name: copy.deepcopy(getattr(self, name)) for name in PROFILE_TRAITS}
        self._storage_secret: dict | None = None
        self._storage_added: dict[str, list] = {}  # what the last spawn added, taken out on the next
        self._secret_environment: dict[str, str] = {}  # set_secret_environment's, in server_secret_name
        if self.enable_user_namespaces:  # ours, not KubeSpawner's template: length-safe for any prefix
            self.namespace = self.user_namespace_name
            self.dns_name = self.dns_name_template.format(namespace=self.namespace, name=self.pod_name)

    @property
    def user_namespace_name(self) -> str:
        """The user's namespace: the same for all their servers, distinct for any two user names."""
        return user_namespace(self.user_namespace_prefix, self.user.name)

    def isolation(self) -> UserNamespace:
        """What the user's namespace must hold (hub/kubernetes_isolation.py builds and applies it)."""
        return UserNamespace(
            name=self.user_namespace_name,
            owner=self.user.name,
            owner_id=str(self.user.id),
            hub_peers=[dict(peer) for peer in self.server_ingress_from],
            pod_security=POD_SECURITY[self.storage_mount_mode],
            quota=dict(self.user_namespace_quota),
            ingresses=self.user_ingresses,
        )

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
        """The user's mounted connections as CSI volumes or rclone sidecars (the Secret is made in _start)."""
        for name, added in self._storage_added.items():  # a respawn: the previous mounts may be gone
            setattr(self, name, [item for item in getattr(self, name) if item not in added])
        self._storage_added, self._storage_secret = {}, None
        if not self.storage_root or self.storage_mount_mode == "none":
            return
        store = ConnectionStore(self.storage_root)
        connections = [c for c in store.load(self.user.name).values() if c.mounted]
        numeric = isinstance(self.uid, int) and isinstance(self.fs_gid, int)  # each may be a callable
        uid, gid = (self.uid, self.fs_gid) if numeric else (1000, 100)
        spec = render_mounts(
            self.user.name, connections, remote_env, namespace=self.namespace, home=self.storage_home,
            mode=self.storage_mount_mode, csi_driver=self.storage_csi_driver, uid=uid, gid=gid,
        )  # fmt: skip
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

    def set_secret_environment(self, name: str, value: str) -> None:
        """Give the server `name`=`value` through its own Secret (server_secret_name, made in _start before the pod):
        the pod spec holds a secretKeyRef, never the value (pre-spawn hooks call this, e.g. Label Studio's database)."""
        self._secret_environment[name] = value
        reference = {"secretKeyRef": {"name": self.server_secret_name, "key": name}}
        self.environment = {**self.environment, name: {"valueFrom": reference}}

    @property
    def server_secret_name(self) -> str:
        """The server's Secret: named after its pod (one per user and server, even in one shared namespace)."""
        return f"{self.pod_name}-env"

    def server_secret(self) -> dict | None:
        """The Secret of the values set_secret_environment was given (None: none)."""
        if not self._secret_environment:
            return None
        labels = {"app.kubernetes.io/part-of": "reeflab", "app.kubernetes.io/component": "singleuser-server"}
        data = {
            key: base64.b64encode(value.encode()).decode() for key, value in sorted(self._secret_environment.items())
        }
        metadata = {"name": self.server_secret_name, "namespace": self.namespace, "labels": labels}
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}

    async def apply_server_secret(self) -> None:
        """Create or replace the Secret of the server's environment values (set_secret_environment)."""
        await self._apply_secret(self.server_secret())

    async def apply_storage_secret(self) -> None:
        """Create or replace the user's storage Secret (credentials never go in the pod spec)."""
        await self._apply_secret(self._storage_secret)

    async def _apply_secret(self, secret: dict | None) -> None:
        if secret is None:
            return
        name = secret["metadata"]["name"]
        try:
            await self.api.create_namespaced_secret(self.namespace, secret)
        except ApiException as err:
            if err.status != 409:
                raise
            await self.api.replace_namespaced_secret(name, self.namespace, secret)

    async def ensure_user_namespace(self) -> None:
        """The user's namespace, ServiceAccount, Role, RoleBinding, NetworkPolicies (and quota), up to date;
        a namespace of that name that is not this user's stops the spawn with a message."""
        try:
            await isolation.ensure(self.api.api_client, self.isolation(), self.log)
        except NamespaceRefused as err:
            error = web.HTTPError(err.status, err.message)
            error.jupyterhub_message = err.message
            raise error from None

    async def _ensure_namespace(self):
        """Nothing: ensure_user_namespace (with the ownership check) ran before KubeSpawner gets here."""

    def get_env(self) -> dict:
        env = super().get_env()
        env["REEFLAB_NAMESPACE"] = self.namespace  # the user's: their deployments and jobs go there
        env["REEFLAB_STORAGE_MOUNTS"] = self.storage_mount_mode  # and are mounted the same way
        if self.storage_mount_mode == "csi":
            env["REEFLAB_STORAGE_CSI_DRIVER"] = self.storage_csi_driver
        return env

    async def _start(self):
        # this spawn's profile and mounts first (KubeSpawner's _start loads them again, to the same result)
        await self.load_user_options()
        if self.enable_user_namespaces:
            self.namespace = self.user_namespace_name  # never one remembered in an older state
            await self.ensure_user_namespace()
        await self.apply_storage_secret()
        await self.apply_server_secret()
        return await super()._start()

    async def delete_forever(self):
        """A deleted user's namespace goes with their home volume: nothing of theirs is left for a namesake.
        Where a namespace of that name is not theirs, nothing in it is touched (not even a PVC)."""
        if self.enable_user_namespaces:
            problem = await isolation.check_owner(self.api.api_client, self.isolation())
            if problem:
                self.log.warning("deleting nothing of %s: %s", self.user.name, problem)
                return
        await super().delete_forever()
        if self.name or not (self.enable_user_namespaces and self.delete_user_namespace and self.delete_pvc):
            return
        if await isolation.delete(self.api.api_client, self.isolation(), self.log):
            self.log.info("deleted namespace %s of deleted user %s", self.user_namespace_name, self.user.name)
