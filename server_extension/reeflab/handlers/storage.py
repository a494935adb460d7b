"""Storage: connections (S3, WebDAV), their files, mounts and transfers, for the panel and the client."""

from __future__ import annotations

import io
import mimetypes

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..storage.models import FolderRequest, TransferRequest
from ..storage.service import StorageService
from .base import ReefLabHandler


class StorageBase(ReefLabHandler):
    auth_resource = "reeflab:storage"

    @property
    def storage(self) -> StorageService:
        return self.services.storage


class StorageHandler(StorageBase):
    """GET: what this server can do (are FUSE mounts possible here?)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(self.storage.capabilities())


class ConnectionsHandler(StorageBase):
    """GET: your connections (no secrets). POST: create one; it is tested first (?test=0 skips)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        connections = await self.run_blocking(self.storage.list, self.username)
        self.write_json({"connections": [self.storage.public(c) for c in connections]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        test = self.get_argument("test", "1") not in ("0", "false")
        connection = await self.run_blocking(self.storage.create, self.username, self.request.body, test)
        self.write_json(self.storage.public(connection), status=201)


class ConnectionHandler(StorageBase):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.write_json(self.storage.public(await self.run_blocking(self.storage.get, self.username, name)))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.run_blocking(self.storage.delete, self.username, name)
        self.set_status(204)
        self.finish()


class ConnectionTestHandler(StorageBase):
    """POST: a real round trip with the stored credentials; 502 with the reason if it fails."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.write_json(await self.run_blocking(self.storage.test, self.username, name))


class MountHandler(StorageBase):
    """POST: mount at ~/storage/<name>. DELETE: unmount. GET: the mount's state."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        connection = await self.run_blocking(self.storage.get, self.username, name)
        self.write_json(self.storage.mount_status(connection))

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.write_json(await self.run_blocking(self.storage.mount, self.username, name))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        self.write_json(await self.run_blocking(self.storage.unmount, self.username, name))


class FilesHandler(StorageBase):
    """GET ?path=&limit=&page=: one page of a folder's entries; `next_page` fetches the next."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        path, page = self.get_argument("path", ""), self.get_argument("page", None)
        limit = self.int_argument("limit", 0, 0, 1000)  # 0: the server's page size
        self.write_json(await self.run_blocking(self.storage.ls, self.username, name, path, limit, page))


class FileHandler(StorageBase):
    """GET ?path=: download. PUT ?path= (body: the bytes): upload. DELETE ?path=&confirm=<path>: delete."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        path = self.get_argument("path", "")
        chunks = await self.run_blocking(self.storage.download, self.username, name, path)
        first = await self.run_blocking(next, chunks, b"")  # errors (404, refused) before any header goes out
        filename = path.rstrip("/").rsplit("/", 1)[-1]
        self.set_header("Content-Type", mimetypes.guess_type(filename)[0] or "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        chunk = first
        while chunk:
            self.write(chunk)
            await self.flush()
            chunk = await self.run_blocking(next, chunks, b"")
        self.finish()

    @web.authenticated
    @authorized
    async def put(self, name: str) -> None:
        path = self.get_argument("path", "")
        body = io.BytesIO(self.request.body)
        self.write_json(await self.run_blocking(self.storage.upload, self.username, name, path, body), status=201)

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        path, confirm = self.get_argument("path", ""), self.get_argument("confirm", None)
        self.write_json(await self.run_blocking(self.storage.delete_path, self.username, name, path, confirm))


class FoldersHandler(StorageBase):
    """POST {"path": "fish-in"}: make an empty folder (201); 400 on a bad name, 409 if something is there."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        request = self.parse_body(FolderRequest, "folder request")
        self.write_json(await self.run_blocking(self.storage.mkdir, self.username, name, request.path), status=201)


class TransfersHandler(StorageBase):
    """GET: your transfers. POST: copy or sync between a connection and your workspace (runs in background)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"transfers": [t.public() for t in self.storage.transfers(self.username)]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.parse_body(TransferRequest, "transfer")
        self.write_json((await self.storage.start_transfer(self.username, request)).public(), status=201)


class TransferHandler(StorageBase):
    """GET: a transfer's progress. DELETE: cancel it."""

    @web.authenticated
    @authorized
    async def get(self, transfer_id: str) -> None:
        self.write_json(self.storage.transfer(self.username, transfer_id).public())

    @web.authenticated
    @authorized
    async def delete(self, transfer_id: str) -> None:
        self.write_json((await self.storage.cancel_transfer(self.username, transfer_id)).public())
