"""Copy/sync between a connection and the workspace with `rclone copy|sync`, progress from its JSON stats."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from . import rclone
from .models import StorageConnection, Transfer


def now() -> datetime:
    return datetime.now(UTC)


def command(transfer: Transfer, connection: StorageConnection, local: Path) -> list[str]:
    remote = rclone.remote_path(connection, transfer.path)
    source, destination = (remote, str(local)) if transfer.direction == "download" else (str(local), remote)
    return [
        rclone.rclone_binary(),
        transfer.mode,
        source,
        destination,
        "--use-json-log",
        "--stats", "1s",
        "--stats-log-level", "NOTICE",
        "--log-level", "NOTICE",
        *rclone.FAST_FAIL,
    ]  # fmt: skip


async def run(transfer: Transfer, connection: StorageConnection, local: Path, config_file: Path) -> None:
    """Run the transfer to its end, updating `transfer` (progress, then done/failed with the reason)."""
    proc = await asyncio.create_subprocess_exec(
        *command(transfer, connection, local),
        env=rclone.child_env(connection, config_file),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    last_error = None
    try:
        async for raw in proc.stderr:
            entry = rclone.parse_log_line(raw.decode(errors="replace"))
            stats = entry.get("stats")
            if isinstance(stats, dict):
                transfer.bytes = int(stats.get("bytes") or 0)
                transfer.total_bytes = int(stats.get("totalBytes") or 0)
                transfer.files = int(stats.get("transfers") or 0)
                transfer.total_files = int(stats.get("totalTransfers") or 0)
                transfer.errors = int(stats.get("errors") or 0)
            elif entry.get("level") in ("error", "critical", "fatal"):
                last_error = rclone.scrub(entry.get("msg", "").strip(), connection.secrets())[:500]
        code = await proc.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
        transfer.state, transfer.reason, transfer.ended = "cancelled", "cancelled by you", now()
        raise
    transfer.ended = now()
    if code == 0:
        transfer.state = "done"
    else:
        transfer.state = "failed"
        transfer.reason = last_error or f"rclone {transfer.mode} exited with {code}"
