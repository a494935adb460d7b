"""Storage from Python: connect once, then use it anywhere.

from reeflab.client import storage
cloud = storage.connect("cloud", url="https://cloud.example.org/remote.php/dav/files/ana",
                        user="ana", password=app_password)          # WebDAV / Nextcloud
lake = storage.connect("lake", endpoint="https://minio.example.org", bucket="fish",
                       access_key=key, secret_key=secret)           # S3
cloud.ls("survey"); cloud.upload("counts.csv", "survey/counts.csv"); cloud.mount()
cloud.mkdir("survey/2026")
mine = storage.get("reeflab")   # the platform's own: your bucket (mine.bucket_path, e.g. 'ana')
mine.path("fish-in")            # 'ana/fish-in': the form serverless services take as input/output
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .connection import Connection, ReefLabClientError, default_connection


class Storage:
    """A handle on one of your storage connections; `info` is what the server says about it (no secrets)."""

    def __init__(self, info: dict[str, Any], connection: Connection):
        self.info = info
        self.connection = connection

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def bucket_path(self) -> str | None:
        """S3: the bucket (and folder) this connection's paths are in, e.g. 'ana'; WebDAV: None."""
        return self.info.get("bucket_path")

    def path(self, path: str = "") -> str:
        """How the rest of the platform names `path` of this connection: 'ana/fish-in' in the platform's
        bucket (serverless input/output), else 'cloud:survey' (notebook jobs' inputs and outputs)."""
        path = path.strip("/")
        if self.info.get("platform"):
            return "/".join(p for p in (self.bucket_path, path) if p)
        return f"{self.name}:{path}"

    def __repr__(self) -> str:
        return f"<Storage {self.name}: {self.info['description']}>"

    def _path(self, *parts: str) -> tuple[str, ...]:
        return ("storage", "connections", self.name, *parts)

    def test(self) -> dict[str, Any]:
        """A real round trip with the stored credentials; raises with the reason if it fails."""
        return self.connection.post(*self._path("test"))

    def ls(self, path: str = "", limit: int = 1000) -> list[dict[str, Any]]:
        """Every entry of a folder (fetched page by page): name, path, type, size, modified."""
        items, page = [], None
        while True:
            params = {"path": path, "limit": limit, **({"page": page} if page else {})}
            listing = self.connection.get(*self._path("files"), **params)
            items += listing["items"]
            page = listing["next_page"]
            if not page:
                return items

    def upload(self, local: str | Path, path: str | None = None) -> str:
        """Upload a local file to `path` (default: its name at the top); returns the path written."""
        local = Path(local)
        path = path or local.name
        with open(local, "rb") as data:
            self.connection.request("PUT", *self._path("file"), params={"path": path}, data=data)
        return path

    def download(self, path: str, local: str | Path | None = None) -> Path:
        """Download a file to `local` (default: its name, here); returns the local path."""
        local = Path(local or path.rstrip("/").rsplit("/", 1)[-1])
        url = self.connection.api_url(*self._path("file"))
        with self.connection.session.get(url, params={"path": path}, stream=True, timeout=self.connection.timeout) as r:
            if not r.ok:
                raise ReefLabClientError(r.status_code, r.json().get("message", r.reason))
            with open(local, "wb") as out:
                for chunk in r.iter_content(1 << 20):
                    out.write(chunk)
        return local

    def mkdir(self, path: str) -> str:
        """Make an empty folder (and those above it); returns its path. Refused if something is there."""
        return self.connection.post(*self._path("folders"), json={"path": path})["path"]

    def delete(self, path: str, confirm: str | None = None) -> dict[str, Any]:
        """Delete a file or a folder with all it holds; `confirm` must repeat `path` (a guard against slips)."""
        return self.connection.request("DELETE", *self._path("file"), params={"path": path, "confirm": confirm})

    def mount(self) -> dict[str, Any]:
        """Mount at ~/storage/<name> (kept across server restarts); returns the mount's state."""
        return self.connection.post(*self._path("mount"))

    def unmount(self) -> dict[str, Any]:
        return self.connection.request("DELETE", *self._path("mount"))

    def copy(self, path: str, workspace_path: str, direction: str = "download", mode: str = "copy",
             wait: bool = True, progress: bool = True) -> dict[str, Any]:  # fmt: skip
        """Copy (or `mode='sync'`) a folder or file between this storage and your workspace, with progress."""
        body = {"connection": self.name, "path": path, "workspace_path": workspace_path,
                "direction": direction, "mode": mode}  # fmt: skip
        transfer = self.connection.post("storage", "transfers", json=body)
        if not wait:
            return transfer
        with tqdm(total=None, unit="B", unit_scale=True, desc=f"{self.name}: {mode}", disable=not progress) as bar:
            while transfer["state"] == "running":
                time.sleep(0.5)
                transfer = self.connection.get("storage", "transfers", transfer["id"])
                bar.total = transfer["total_bytes"] or None
                bar.update(transfer["bytes"] - bar.n)
        if transfer["state"] != "done":
            raise ReefLabClientError(409, f"{mode} {transfer['state']}: {transfer.get('reason')}")
        return transfer

    def remove(self) -> None:
        """Forget this connection (unmounting it first); the data on the storage stays."""
        self.connection.request("DELETE", *self._path())


def connect(name: str, *, connection: Connection | None = None, test: bool = True, **spec: str) -> Storage:
    """Create a connection: WebDAV with url/user/password, S3 with endpoint/bucket/access_key/secret_key.

    `kind` is guessed from the arguments; the server tests it first and refuses it with the reason.
    """
    connection = connection or default_connection()
    kind = spec.pop("kind", None) or ("s3" if "bucket" in spec or "endpoint" in spec else "webdav")
    info = connection.request(
        "POST",
        "storage",
        "connections",
        params={"test": "1" if test else "0"},
        json={"name": name, "kind": kind, **spec},
    )
    return Storage(info, connection)


def get(name: str, connection: Connection | None = None) -> Storage:
    connection = connection or default_connection()
    return Storage(connection.get("storage", "connections", name), connection)


def connections(connection: Connection | None = None) -> list[Storage]:
    connection = connection or default_connection()
    return [Storage(info, connection) for info in connection.get("storage", "connections")["connections"]]
