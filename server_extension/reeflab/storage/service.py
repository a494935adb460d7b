"""StorageService: each user's storage connections, their data, mounts and transfers.

Used by the handlers (panel, client) and by the rest of the platform: jobs, deployments,
serverless services and training runs name `connection:path`; `resolve()` and
`credentials_env()` turn that into a location and the environment a child process needs,
for that user only.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from jupyter_core.paths import jupyter_data_dir
from pydantic import TypeAdapter, ValidationError
from traitlets import Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, Conflict, Forbidden, NotFound, invalid
from . import rclone, transfers
from .models import PLATFORM, ConnectionRequest, S3Request, StorageConnection, Transfer, TransferRequest
from .mounts import MountManager, fuse_problem
from .paths import folder_path, join, remote_path, workspace_path
from .platform import engine_config_url, fetch_provider, platform_bucket
from .remotes import Remote, StorageFailed, remote_for
from .store import ConnectionStore

REQUEST = TypeAdapter(ConnectionRequest)


def now() -> datetime:
    return datetime.now(UTC)


def parse_connection(body: bytes | dict) -> S3Request | Any:
    """A connection request from JSON, or a 400 listing what to fix (values never echoed: they may be secrets)."""
    try:
        if isinstance(body, dict):
            return REQUEST.validate_python(body)
        return REQUEST.validate_json(body or b"{}")
    except ValidationError as err:
        raise invalid("storage connection", err, tagged=True) from None


@dataclass
class ResolvedPath:
    """`connection:path` as a child process uses it; `env` holds secrets: pass it, never show it."""

    connection: str
    kind: str
    path: str
    rclone: str  # remote:path for rclone, with `env` set
    url: str  # s3://bucket/key or the WebDAV URL of the path
    env: dict[str, str] = field(repr=False)


class StorageService(LoggingConfigurable):
    """One server's storage connections (every user's on their own, never shared)."""

    root_dir = Unicode(config=True, help="Where connections (0600 files), mount state and caches are kept")

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "storage")

    workspace = Unicode(config=True, help="The user's workspace (file browser root); mounts go in <workspace>/storage")

    @default("workspace")
    def _default_workspace(self) -> str:
        return os.getcwd()

    mount_folder = Unicode("storage", config=True, help="Folder of the workspace holding the mounts")
    connect_timeout = Float(4, config=True, help="Seconds to wait for a storage server to answer a connection")
    mount_timeout = Float(20, config=True, help="Seconds an rclone mount may take to appear")
    max_connections = Int(20, config=True, help="Connections a user may have")
    page_size = Int(100, config=True, help="Default number of entries per listing page (at most 1000)")

    platform_config_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The serverless engine's /system/config, source of the user's platform S3 keys "
        "(default: $REEFLAB_SERVERLESS_URL/system/config; none: no platform connection)",
    )

    @default("platform_config_url")
    def _default_platform_config_url(self) -> str | None:
        return engine_config_url()

    platform_token = Unicode(
        config=True,
        help="Token to ask the engine with (default: the serverless gateway's, $REEFLAB_SERVERLESS_TOKEN "
        "(an OSCAR cluster's OIDC token), else $JUPYTERHUB_API_TOKEN)",
    )

    @default("platform_token")
    def _default_platform_token(self) -> str:
        return os.environ.get("REEFLAB_SERVERLESS_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN", "")

    platform_retry = Float(5, config=True, help="Seconds before asking the engine again after it failed")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.store = ConnectionStore(self.root_dir)
        self._mounts: dict[str, MountManager] = {}
        self._transfers: dict[str, Transfer] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._platform_tried: dict[str, float] = {}
        self._remotes: dict[tuple[str, str], tuple[str, Remote]] = {}

    # -- connections -----------------------------------------------------------

    def list(self, owner: str) -> list[StorageConnection]:
        self.ensure_platform_connection(owner)
        return sorted(self.store.load(owner).values(), key=lambda c: (not c.platform, c.name))

    def get(self, owner: str, name: str) -> StorageConnection:
        if name == PLATFORM:
            self.ensure_platform_connection(owner)
        connection = self.store.load(owner).get(name)
        if connection is None:  # another user's is as absent as a missing one
            raise NotFound(f"No storage connection '{name}'; list yours at /reeflab/api/storage/connections.")
        return connection

    def public(self, connection: StorageConnection) -> dict[str, Any]:
        data = connection.public()
        data["mount"] = self.mount_status(connection)
        return data

    def create(self, owner: str, body: bytes | dict, test: bool = True) -> StorageConnection:
        """Validate, test with a real round trip (fast failure), then store; nothing is stored on failure."""
        spec = parse_connection(body)
        if spec.name == PLATFORM:
            raise BadRequest(f"'{PLATFORM}' is the platform's own storage: choose another name.")
        existing = self.store.load(owner)
        if spec.name in existing:
            raise Conflict(f"You already have a connection '{spec.name}': delete it first or choose another name.")
        if len(existing) >= self.max_connections:
            raise Forbidden(f"You have {len(existing)} connections, the most allowed: delete one first.")
        connection = StorageConnection(owner=owner, created=now(), spec=spec)
        if test:
            try:
                remote_for(connection, self.connect_timeout).check()
            except (StorageFailed, NotFound) as err:
                raise BadRequest(f"Connection not saved: {err.message}") from None
        self.store.save(connection)
        self.log.info("storage connection %s of %s created (%s)", spec.name, owner, spec.kind)
        return connection

    def set_platform_connection(
        self, owner: str, endpoint: str, access_key: str, secret_key: str, bucket: str, prefix: str = ""
    ) -> StorageConnection:
        """The hook for the platform's own S3 (e.g. /system/config's minio_provider): the user's `reeflab`."""
        spec = S3Request(
            kind="s3",
            name=PLATFORM,
            endpoint=endpoint,
            bucket=bucket,
            prefix=prefix,
            access_key=access_key,
            secret_key=secret_key,
        )
        previous = self.store.load(owner).get(PLATFORM)
        connection = StorageConnection(
            owner=owner,
            created=previous.created if previous else now(),
            spec=spec,
            platform=True,
            mounted=previous.mounted if previous else False,
        )
        self.store.save(connection)
        return connection

    def ensure_platform_connection(self, owner: str) -> StorageConnection | None:
        """Make (or refresh) the user's `reeflab` connection from the engine's config; quiet on failure."""
        if not self.platform_config_url or not self.platform_token:
            return None
        existing = self.store.load(owner).get(PLATFORM)
        last = self._platform_tried.get(owner)
        if last is not None and (existing or time.monotonic() - last < self.platform_retry):
            return existing
        self._platform_tried[owner] = time.monotonic()
        try:
            provider = fetch_provider(self.platform_config_url, self.platform_token, self.connect_timeout)
        except StorageFailed as err:
            self.log.warning("no platform storage for %s: %s", owner, err.message)
            return existing
        bucket = platform_bucket(provider["user"] or owner)  # the engine's name for the user opens the bucket
        spec = existing.spec if existing else None
        if spec and (spec.endpoint, spec.access_key) == (provider["endpoint"].rstrip("/"), provider["access_key"]):
            if spec.secret_key.get_secret_value() == provider["secret_key"] and spec.bucket == bucket:
                return existing
        return self.set_platform_connection(
            owner, provider["endpoint"], provider["access_key"], provider["secret_key"], bucket
        )

    def test(self, owner: str, name: str) -> dict[str, Any]:
        connection = self.get(owner, name)
        started = time.monotonic()
        self._remote(owner, connection.name).check()
        return {"ok": True, "seconds": round(time.monotonic() - started, 3)}

    def delete(self, owner: str, name: str) -> None:
        connection = self.get(owner, name)
        if connection.platform:
            raise Forbidden(f"'{name}' is the platform's own storage and cannot be deleted.")
        self._manager(owner).unmount(connection, self.mountpoint(connection))
        self.store.delete(owner, name)
        self._remotes.pop((owner, name), None)

    # -- data ------------------------------------------------------------------

    def ls(self, owner: str, name: str, path: str = "", limit: int | None = None, page: str | None = None) -> dict:
        limit = limit or self.page_size
        if not 1 <= limit <= 1000:
            raise BadRequest("limit must be between 1 and 1000 entries")
        path = remote_path(path)
        items, next_page = self._remote(owner, name).list(path, limit, page)
        return {"connection": name, "path": path, "items": items, "next_page": next_page}

    def upload(self, owner: str, name: str, path: str, data: IO[bytes]) -> dict:
        path = remote_path(path)
        if not path:
            raise BadRequest("Give the path of the file to write, e.g. 'data/image.jpg'.")
        self._remote(owner, name).upload(path, data)
        return {"connection": name, "path": path}

    def mkdir(self, owner: str, name: str, path: str) -> dict:
        """Make an empty folder (and those above it); 409 if something is already there."""
        path = folder_path(path)
        remote = self._remote(owner, name)
        parts = path.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if remote.kind(above) == "file":
                raise BadRequest(f"'{above}' is a file in {name}: a folder cannot go inside it.")
        there = remote.kind(path)
        if there:
            what = "folder" if there == "directory" else "file"
            raise Conflict(f"{name} already has a {what} '{path}': choose another name.")
        remote.mkdir(path)
        return {"connection": name, "path": path}

    def download(self, owner: str, name: str, path: str) -> Iterator[bytes]:
        path = remote_path(path)
        if not path:
            raise BadRequest("Give the path of a file to download.")
        return self._remote(owner, name).download(path)

    def delete_path(self, owner: str, name: str, path: str, confirm: str | None) -> dict:
        """Delete a file or a folder (with its content) once the user confirmed by repeating its path."""
        path = remote_path(path)
        if not path:
            raise BadRequest("Deleting the whole connection's content is not allowed here: name a file or folder.")
        if remote_path(confirm or "") != path:
            raise BadRequest(f"Confirm the deletion: repeat the path, i.e. add confirm={path} to the request.")
        deleted = self._remote(owner, name).delete(path)
        return {"connection": name, "path": path, "deleted": deleted}

    def _remote(self, owner: str, name: str) -> Remote:
        """The connection's remote, kept while the connection is unchanged (its clients are reused)."""
        connection = self.get(owner, name)
        fingerprint = connection.dump()
        kept = self._remotes.get((owner, name))
        if kept is None or kept[0] != fingerprint:
            kept = self._remotes[(owner, name)] = (fingerprint, remote_for(connection, self.connect_timeout))
        return kept[1]

    # -- mounts ----------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        problem = fuse_problem()
        return {
            "mounts": {"available": problem is None, "reason": problem},
            "mount_folder": self.mount_folder,
        }

    def mountpoint(self, connection: StorageConnection) -> Path:
        return workspace_path(self.workspace, join(self.mount_folder, connection.name))

    def mount_status(self, connection: StorageConnection) -> dict[str, Any]:
        status = self._manager(connection.owner).status(connection, self.mountpoint(connection)).public()
        status["path"] = join(self.mount_folder, connection.name)  # relative to the workspace, as users see it
        return status

    def mount(self, owner: str, name: str) -> dict[str, Any]:
        connection = self.get(owner, name)
        self._remote(owner, name).check()  # a clear reason now, not a dead mount later
        connection.mounted = True
        self.store.save(connection)
        self._manager(owner).mount(connection, self.mountpoint(connection), self._rclone_config())
        return self.mount_status(connection)

    def unmount(self, owner: str, name: str) -> dict[str, Any]:
        connection = self.get(owner, name)
        connection.mounted = False
        self.store.save(connection)
        self._manager(owner).unmount(connection, self.mountpoint(connection))
        return self.mount_status(connection)

    def unmount_all(self, owner: str) -> list[StorageConnection]:
        """Unmount everything of `owner` (the platform stopping); the ones they mounted stay marked so,
        and are mounted again when their server next starts (restore_mounts). Returns those unmounted."""
        return [c for c in self.store.load(owner).values() if self._manager(owner).unmount(c, self.mountpoint(c))]

    def restore_mounts(self, owner: str) -> None:
        """After a server restart: re-attach to living mounts, mount again those that died."""
        for connection in self.list(owner):
            if not connection.mounted:
                continue
            try:
                self._manager(owner).mount(connection, self.mountpoint(connection), self._rclone_config())
            except Exception as err:  # its state shows the reason
                self.log.warning("remounting %s failed: %s", connection.name, getattr(err, "message", err))

    def _manager(self, owner: str) -> MountManager:
        if owner not in self._mounts:
            self._mounts[owner] = MountManager(self.store.folder(owner), self.mount_timeout)
        return self._mounts[owner]

    def _rclone_config(self) -> Path:
        """An empty, private rclone config file: remotes come from the environment only."""
        path = Path(self.root_dir) / "rclone.conf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        return path

    # -- transfers -------------------------------------------------------------

    async def start_transfer(self, owner: str, request: TransferRequest) -> Transfer:
        connection = await asyncio.to_thread(self.get, owner, request.connection)  # the platform's: from the engine
        path = remote_path(request.path)
        local = workspace_path(self.workspace, request.workspace_path)
        if request.direction == "upload" and not local.exists():
            raise BadRequest(f"'{request.workspace_path}' does not exist in your workspace.")
        if request.direction == "download" and request.mode == "sync" and local == Path(self.workspace).resolve():
            raise BadRequest("Syncing into your whole workspace would delete its other files: name a folder.")
        transfer = Transfer(
            id=secrets.token_hex(4),
            owner=owner,
            connection=connection.name,
            path=path,
            workspace_path=str(local.relative_to(Path(self.workspace).resolve())),
            direction=request.direction,
            mode=request.mode,
            started=now(),
        )
        self._transfers[transfer.id] = transfer
        task = asyncio.get_running_loop().create_task(self._run(transfer, connection, local))
        self._tasks[transfer.id] = task
        return transfer

    async def _run(self, transfer: Transfer, connection: StorageConnection, local: Path) -> None:
        try:
            await transfers.run(transfer, connection, local, self._rclone_config())
        except asyncio.CancelledError:
            pass
        except Exception as err:
            transfer.state, transfer.reason, transfer.ended = "failed", str(err)[:300], now()
        finally:
            self._tasks.pop(transfer.id, None)

    def transfers(self, owner: str) -> list[Transfer]:
        return sorted((t for t in self._transfers.values() if t.owner == owner), key=lambda t: t.started)

    def transfer(self, owner: str, transfer_id: str) -> Transfer:
        transfer = self._transfers.get(transfer_id)
        if transfer is None or transfer.owner != owner:
            raise NotFound(f"No transfer '{transfer_id}'.")
        return transfer

    async def cancel_transfer(self, owner: str, transfer_id: str) -> Transfer:
        transfer = self.transfer(owner, transfer_id)
        task = self._tasks.get(transfer_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return transfer

    async def wait_transfers(self) -> None:
        """Let running transfers end (tests, shutdown)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- for the rest of the platform ----------------------------------------------

    def credentials_env(self, owner: str, name: str) -> dict[str, str]:
        """Environment for a child process of `owner` using connection `name` (secrets: never log it).

        Always the rclone remote (`RCLONE_CONFIG_RL_<NAME>_*`); plus AWS_* for S3 (boto3, s3fs,
        the AWS CLI) or WEBDAV_URL/WEBDAV_USER/WEBDAV_PASSWORD for WebDAV.
        """
        connection = self.get(owner, name)
        env = rclone.remote_env(connection)
        spec = connection.spec
        if spec.kind == "s3":
            env.update(
                AWS_ACCESS_KEY_ID=spec.access_key,
                AWS_SECRET_ACCESS_KEY=spec.secret_key.get_secret_value(),
                AWS_ENDPOINT_URL=spec.endpoint,
                AWS_DEFAULT_REGION=spec.region,
            )
        else:
            env.update(WEBDAV_URL=spec.url, WEBDAV_USER=spec.user, WEBDAV_PASSWORD=spec.password.get_secret_value())
        return env

    def resolve(self, owner: str, reference: str) -> ResolvedPath:
        """'connection:path/in/it' -> where it is and how to reach it, for `owner`'s jobs only."""
        name, sep, path = reference.partition(":")
        if not sep or not name:
            raise BadRequest(f"'{reference}' is not a storage reference: write it as '<connection>:<path>'.")
        connection = self.get(owner, name)
        path = remote_path(path)
        spec = connection.spec
        if spec.kind == "s3":
            url = f"s3://{join(spec.bucket, spec.prefix, path)}"
        else:
            url = f"{spec.url}/{path}" if path else spec.url
        return ResolvedPath(
            connection=name,
            kind=spec.kind,
            path=path,
            rclone=rclone.remote_path(connection, path),
            url=url,
            env=self.credentials_env(owner, name),
        )
