"""Where a job's input comes from and where its outputs go, in the platform's S3 storage.

A job made by an upload reads the uploaded object; every async job of a service with `output`
paths gets its output files uploaded there, below the same sub-folder its input had under the
input path (`in/site1/a.jpg` -> `out/site1/a.json`), so each input gives one output and two
inputs never write the same key. Transfers run with the platform's admin key, so each one first
checks that the bucket is recorded as the service owner's (a name is never proof of ownership).
Transfers run in threads, with the MinIO SDK as batch slices' workers use it (slices.Objects): a third of
boto3's CPU a request, which the engine spends on every async job's input and output.
"""

from __future__ import annotations

import asyncio
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import ReefLabError
from ..serverless.fdl import ServiceDefinition
from ..storage.platform_s3 import REGION, PlatformS3, split_path
from .payload import output_files
from .slices import Objects
from .store import JobRecord
from .triggers import UploadedObject, is_platform, matches

TRANSFERS = 16  # connections the engine keeps open to S3 (jobs' inputs and outputs move in threads, many at once)


class TransferFailed(ReefLabError):
    status = 502


class JobStorage:
    """Fetches job inputs and delivers job outputs for the dispatcher."""

    def __init__(
        self,
        s3: PlatformS3 | None,
        definition_for: Callable[[str], ServiceDefinition | None],
        owns: Callable[[str, str], bool] = lambda service, bucket: False,
    ):
        self.s3 = s3
        self.definition_for = definition_for
        self.owns = owns  # (service, bucket) -> is the bucket recorded as the service owner's
        self._client = None

    def client(self) -> Objects:
        """One S3 client for every transfer (thread-safe), whose connection pool is reused from one job to the next."""
        if self._client is None:
            key = self.s3.admin_key
            self._client = Objects(self.s3.endpoint, key["access_key"], key["secret_key"], REGION, TRANSFERS)
        return self._client

    def _check_owner(self, job: JobRecord, bucket: str) -> None:
        if not self.owns(job.service, bucket):
            raise TransferFailed(f"bucket '{bucket}' is not recorded as the owner's of service '{job.service}'")

    async def fetch(self, job: JobRecord, stored: Path | None, target: Path) -> Path:
        """The job's input file, copied or downloaded into `target` (a folder)."""
        if not job.source:
            if stored is None:
                raise TransferFailed("the job's input file is missing from the engine's state")
            shutil.copyfile(stored, target / stored.name)  # modules may delete their input
            return target / stored.name
        if self.s3 is None:
            raise TransferFailed("this engine has no S3 storage configured to read the input from")
        bucket, key = split_path(job.source)
        self._check_owner(job, bucket)
        path = target / posixpath.basename(key)
        try:
            await asyncio.to_thread(_download, self.client(), bucket, key, path)
        except Exception as error:
            raise TransferFailed(f"could not read the uploaded file {job.source}: {error}") from None
        return path

    async def deliver(self, job: JobRecord, output_dir: Path) -> list[tuple[str, str]]:
        """Upload the outputs to the service's output paths; returns each output's name (relative to `output_dir`)
        with the 'bucket/key' it was written to."""
        definition = self.definition_for(job.service)
        targets = [o for o in (definition.output if definition else []) if is_platform(o)]
        files = output_files(output_dir)
        if not targets or not files or self.s3 is None:
            return []
        folder = self._subfolder(definition, job)
        written = []
        client = self.client()
        for target in targets:
            bucket, prefix = split_path(target.path)
            self._check_owner(job, bucket)
            for path in files:
                name = path.relative_to(output_dir).as_posix()
                key = posixpath.join(prefix, folder, name).lstrip("/")
                try:
                    await asyncio.to_thread(_upload, client, path, bucket, key)
                except Exception as error:
                    raise TransferFailed(f"could not write the output {bucket}/{key}: {error}") from None
                written.append((name, f"{bucket}/{key}"))
        return written

    @staticmethod
    def _subfolder(definition: ServiceDefinition, job: JobRecord) -> str:
        if not job.source:
            return ""
        bucket, key = split_path(job.source)
        for storage in definition.input:
            relative = matches(storage, UploadedObject(bucket, key, 0, 0))
            if relative is not None:
                return posixpath.dirname(relative)
        return ""


def _download(client: Objects, bucket: str, key: str, path: Path) -> None:
    """One GET streamed to the file (no HEAD first)."""
    response = client.client.get_object(bucket, key)
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(response, out, 2**20)
    finally:
        response.close()
        response.release_conn()


def _upload(client: Objects, path: Path, bucket: str, key: str) -> None:
    """One PUT for a small file; the SDK's multipart upload for a large one."""
    client.client.fput_object(bucket, key, str(path))
