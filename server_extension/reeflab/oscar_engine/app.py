"""`python -m reeflab.oscar_engine`: the engine as a process, standalone or as a JupyterHub service.

Under the hub (a managed service), JUPYTERHUB_SERVICE_URL gives where to listen and
JUPYTERHUB_SERVICE_PREFIX the base URL (/services/reeflab-serverless/), and hub tokens are
checked with HubAuth. Standalone, pass --ip/--port/--base-url; for tests and development
without a hub, `--ServerlessApp.static_tokens_file` maps tokens to user names.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import json
import logging
import os
from pathlib import Path

from traitlets import Bool, Float, Integer, List, Unicode, default

from .._version import __version__
from ..service_app import HubServiceApp
from ..storage.platform_s3 import PlatformS3
from ..storage.seaweedfs import read_key
from .auth import HubUsers, RequestAuthenticator
from .cors import CorsApplication
from .engine import EngineSettings, OscarEngine
from .routes import UnknownRouteHandler, routes
from .routes_v4 import routes_v4
from .sandbox import PASSED_THROUGH

PR_SET_DUMPABLE = 4


def worker_env() -> dict[str, str]:
    """What workers take from the engine's environment: a fixed list of settings, never its tokens or keys."""
    return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}


class ServerlessApp(HubServiceApp):
    """The engine's configuration (traitlets: command line or a config file) and its lifecycle."""

    name = "reeflab-serverless"
    default_port = 8095
    version = __version__
    description = "ReefLab's local OSCAR-compatible serverless engine"
    aliases = {
        "ip": "ServerlessApp.ip",
        "port": "ServerlessApp.port",
        "base-url": "ServerlessApp.base_url",
        "state-dir": "ServerlessApp.state_dir",
        "config": "ServerlessApp.config_file",
    }

    config_file = Unicode("", config=True, help="A Python traitlets config file to load")
    state_folder = "serverless"  # the job queue, inputs, outputs and logs
    cors_origins = List(
        Unicode(),
        config=True,
        help="Origins (scheme://host[:port]) whose pages may call the engine from a browser, e.g. an OSCAR "
        "dashboard served elsewhere; default none",
    )
    idle_seconds = Float(300, config=True, help="Stop a warm worker idle this long (above its service's min_scale)")
    max_attempts = Integer(3, config=True, help="Runs of an async job whose worker died before it fails")
    invocation_timeout = Float(600, config=True, help="Seconds one invocation may run before it is stopped")
    start_timeout = Float(180, config=True, help="Seconds a worker may take to load its module")
    max_workers = Integer(os.cpu_count() or 1, config=True, help="Warm workers alive at once, all services together")
    max_workers_per_service = Integer(
        os.cpu_count() or 1, config=True, help="Default max_scale of a service whose FDL sets none"
    )
    fork_workers = Bool(
        True,
        config=True,
        help="Fork a module service's workers from one process that loaded the module (they share its memory, "
        "and start in milliseconds); False: each worker loads its own copy",
    )
    max_body_mb = Integer(200, config=True, help="Largest invocation body accepted (MB)")
    s3_endpoint = Unicode("", config=True, help="The platform's S3 server (SeaweedFS): buckets, triggers, outputs")
    s3_admin_key_file = Unicode(
        "", config=True, help="JSON file {access_key, secret_key} of the S3 admin (never on the command line)"
    )
    events_token_file = Unicode(
        "", config=True, help="File with the bearer token the S3 server sends with upload events (webhook)"
    )
    reconcile_seconds = Float(300, config=True, help="How often input paths are listed to catch missed upload events")
    metrics_retention_days = Float(
        30, config=True, help="Days a service's calls are kept one by one (GET .../metrics); older: running totals"
    )
    public_exposed = Bool(
        False,
        config=True,
        help="Let exposed services without `set_auth` answer anyone, as OSCAR does; by default every "
        "exposed service needs its credentials or the login of a user who may use it",
    )
    allow_unsandboxed = Bool(
        False,
        config=True,
        help="Without bubblewrap, run service code unsandboxed under the engine's account (never as root)",
    )
    sandbox_dir = Unicode(
        "",
        config=True,
        help="Folder of the workers' own folders (default: in the state folder, or beside it when users' "
        "accounts run the workers: they must be able to pass through its parents)",
    )
    bwrap = Unicode("", config=True, help="The bubblewrap program that sandboxes workers (default: bwrap on PATH)")
    homes_dir = Unicode(
        config=True,
        help="The hub users' homes, as the spawner makes them (default: $REEFLAB_HOMES, else "
        "$REEFLAB_STATE_DIR/homes): an OS account the engine creates gets its home there",
    )

    @default("homes_dir")
    def _default_homes_dir(self) -> str:
        if os.environ.get("REEFLAB_HOMES"):
            return os.environ["REEFLAB_HOMES"]
        return str(Path(os.environ["REEFLAB_STATE_DIR"]) / "homes") if os.environ.get("REEFLAB_STATE_DIR") else ""

    def initialize(self, argv=None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    def settings(self) -> EngineSettings:
        return EngineSettings(
            state_dir=Path(self.state_dir),
            idle_seconds=self.idle_seconds,
            max_attempts=self.max_attempts,
            invocation_timeout=self.invocation_timeout,
            start_timeout=self.start_timeout,
            max_workers=self.max_workers,
            max_workers_per_service=self.max_workers_per_service,
            fork_workers=self.fork_workers,
            worker_env=worker_env(),
            s3=self.s3(),
            reconcile_seconds=self.reconcile_seconds,
            metrics_retention_days=self.metrics_retention_days,
            allow_unsandboxed=self.allow_unsandboxed,
            bwrap=self.bwrap,
            sandbox_dir=Path(self.sandbox_dir) if self.sandbox_dir else None,
            homes_dir=Path(self.homes_dir) if self.homes_dir else None,
            base_url=self.base_url,
            max_body_bytes=self.max_body_mb * 2**20,
            public_exposed=self.public_exposed,
            secret_files=tuple(
                Path(f)
                for f in (self.s3_admin_key_file, self.events_token_file, self.static_tokens_file, self.config_file)
                if f
            ),
        )

    def s3(self) -> PlatformS3 | None:
        if not self.s3_endpoint:
            return None
        if not self.s3_admin_key_file:
            raise SystemExit("--ServerlessApp.s3_admin_key_file is needed with s3_endpoint")
        return PlatformS3(self.s3_endpoint, read_key(Path(self.s3_admin_key_file)))

    async def serve(self) -> None:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its "setup plugin" lines at import, via jupyterhub
        state = self.private_state()  # every user's OSCAR password and S3 key are in there
        lock = _lock(state / "engine.lock")
        _not_dumpable()
        engine = OscarEngine(self.settings())
        static = json.loads(Path(self.static_tokens_file).read_text()) if self.static_tokens_file else {}
        hub_auth = self.hub_auth()
        hub_users = None
        if hub_auth is not None:  # the hub's users (list:users, read:users): generations, deleted users
            hub_users = HubUsers(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
            engine.hub_users = hub_users
        auth = RequestAuthenticator(engine.store, hub_auth, static, frozenset(self.admin_users), hub_users)
        events_token = Path(self.events_token_file).read_text().strip() if self.events_token_file else ""
        context = {"engine": engine, "auth": auth, "events_token": events_token}
        app = CorsApplication(
            routes(self.base_url, **context) + routes_v4(self.base_url, **context),
            self.cors_origins,
            base_url=self.base_url,
            default_handler_class=UnknownRouteHandler,
            xsrf_cookies=False,
        )
        await engine.start()
        # what the engine loaded to start (its libraries, ~120k objects) out of the collector's sight: each full
        # collection walked it all (~60 ms) while async jobs made garbage
        gc.collect()
        gc.freeze()
        self.log.info(
            "ReefLab serverless engine at http://%s:%s%s (state in %s)", self.ip, self.port, self.base_url, state
        )
        size = self.max_body_mb * 2**20
        await self.serve_until_stopped(app, max_body_size=size, max_buffer_size=size)
        self.log.info("stopping: running jobs go back to the queue at the next start")
        await engine.stop()
        lock.close()


def _lock(path: Path):
    """Hold an exclusive lock on the state folder: two engines must never share a queue."""
    handle = open(path, "a")  # held open (and locked) for the life of the engine
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another engine already uses {path.parent}: stop it first") from None
    return handle


def _not_dumpable() -> None:
    """Keep same-account processes (service scripts) from reading this process's memory and environment."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0)


def main() -> None:
    ServerlessApp.launch_instance()
