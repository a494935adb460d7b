"""Storage: how fast a bad connection is refused, and moving a dataset three ways (one run).

Starts a real WebDAV server (wsgidav, Nextcloud-style path) and a real SeaweedFS, then measures:
- time to refuse a wrong password and an unreachable host (the ReefLab check: a few seconds at
  most, where rclone's defaults retry for minutes);
- writing N small files (a typical image dataset) through the API (webdav4/boto3, one request
  each), through the rclone FUSE mount (plain file writes, as a notebook does), and with one
  `rclone copy` transfer; prints files/s and the ratio of each to the API.

    .venv/bin/python bench/storage.py [--files 200] [--size 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
from pathlib import Path

from reeflab.errors import ReefLabError
from reeflab.files import free_port
from reeflab.storage.models import TransferRequest
from reeflab.storage.platform_s3 import PlatformS3
from reeflab.storage.service import StorageService
from reeflab.storage.testing import SeaweedProcess, WebDAVProcess
from reeflab.testing.process import wait_until


def refused_in(service: StorageService, body: dict) -> float:
    started = time.monotonic()
    try:
        service.create("ana", body)
    except ReefLabError:
        return time.monotonic() - started
    raise SystemExit(f"{body['name']} was accepted")


def write_three_ways(service: StorageService, name: str, files: dict[str, bytes], workspace: Path, count) -> dict:
    rates = {}
    started = time.monotonic()
    for path, data in files.items():
        service.upload("ana", name, f"api/{path}", io.BytesIO(data))
    rates["API (one request per file)"] = len(files) / (time.monotonic() - started)

    service.mount("ana", name)
    try:
        target = workspace / "storage" / name / "mount"
        started = time.monotonic()
        target.mkdir()
        for path, data in files.items():
            (target / path).write_bytes(data)
        wait_until(lambda: count("mount") >= len(files), 600, "the mount's uploads", interval=0.05)
        rates["FUSE mount (file writes)"] = len(files) / (time.monotonic() - started)
    finally:
        service.unmount("ana", name)

    local = workspace / "dataset"
    if not local.exists():
        local.mkdir()
        for path, data in files.items():
            (local / path).write_bytes(data)

    async def transfer():
        request = TransferRequest(connection=name, path="copy", workspace_path="dataset", direction="upload")
        started = time.monotonic()
        done = service.start_transfer("ana", request)
        await service.wait_transfers()
        assert done.state == "done", done.reason
        return len(files) / (time.monotonic() - started)

    rates["rclone copy (one transfer)"] = asyncio.run(transfer())
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=20_000, help="bytes per file")
    args = parser.parse_args()
    files = {f"img{n:05d}.jpg": os.urandom(args.size) for n in range(args.files)}
    with tempfile.TemporaryDirectory() as tmp, WebDAVProcess(Path(tmp) / "dav") as dav:
        seaweed = SeaweedProcess(Path(tmp) / "s3").start()
        try:
            key = PlatformS3(seaweed.endpoint, seaweed.key).user_key("ana")
            workspace = Path(tmp) / "home"
            service = StorageService(root_dir=f"{tmp}/state", workspace=str(workspace))
            cloud = {"kind": "webdav", "name": "cloud", "url": dav.url, "user": "ana", "password": dav.password}
            lake = {"kind": "s3", "name": "lake", "endpoint": seaweed.endpoint, "bucket": "ana",
                    "access_key": key["access_key"], "secret_key": key["secret_key"]}  # fmt: skip
            dead = f"http://127.0.0.1:{free_port()}/remote.php/dav/files/ana"
            print(f"wrong WebDAV password refused in {refused_in(service, {**cloud, 'password': 'x'}):.2f} s")
            print(f"wrong S3 secret refused in       {refused_in(service, {**lake, 'secret_key': 'x'}):.2f} s")
            print(f"unreachable host refused in      {refused_in(service, {**cloud, 'url': dead}):.2f} s")
            print("  (rclone's defaults: --contimeout 1m, --timeout 5m, 10 low-level retries x 3 retries)")
            service.create("ana", cloud)
            service.create("ana", lake)
            s3 = seaweed.client(key=key)
            counters = {
                "cloud": lambda sub: len(list((dav.root / sub).glob("*"))) if (dav.root / sub).exists() else 0,
                "lake": lambda sub: s3.list_objects_v2(Bucket="ana", Prefix=f"{sub}/").get("KeyCount", 0),
            }
            print(f"\n{args.files} files of {args.size} bytes:")
            for name in ("cloud", "lake"):
                rates = write_three_ways(service, name, files, workspace, counters[name])
                api = rates["API (one request per file)"]
                for way, rate in rates.items():
                    print(f"  {name:5s} {way:28s} {rate:8.1f} files/s   x{rate / api:.2f} of the API")
        finally:
            seaweed.stop()


if __name__ == "__main__":
    main()
