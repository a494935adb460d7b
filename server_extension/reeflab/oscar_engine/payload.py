"""Invocation payloads as OSCAR's FaaS supervisor reads and answers them.

Input: a JSON body is the input file as is; any other body is base64 of the file (what
oscar-python and oscar-cli send); a body that is not base64 is taken as the raw file.
Sync output: one file in TMP_OUTPUT_DIR comes back base64-encoded, several as a base64 zip,
none as the script's output (stdout and stderr).
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from .inputs import sniff_json


def decode_event(body: bytes) -> bytes:
    """The input file an invocation body stands for."""
    stripped = body.strip()
    if stripped[:1] in (b"{", b"["):
        event = sniff_json(stripped)  # a JSON body too deep or malformed for us is still the caller's file
        if isinstance(event, dict) and _is_storage_event(event):
            raise BadRequest(
                "this body is a storage event (Records[].eventSource): storage triggers are not enabled "
                "on this engine yet; send the file itself, base64-encoded"
            )
        if event is not None:
            return body
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return body


def event_file_name() -> str:
    """The input file's name as OSCAR's FaaS supervisor writes it (scripts written for OSCAR look for it)."""
    return f"event-file-{uuid.uuid4()}"


def failure_lines(log: bytes, limit: int = 15) -> list[str]:
    """The end of a failed invocation's output for its answer, without Python traceback frames (server paths)."""
    kept: list[str] = []
    in_frame = False
    for line in log.decode(errors="replace").strip().splitlines():
        if line.startswith('  File "'):
            in_frame = True
            continue
        if in_frame and line.startswith("    "):
            continue  # the frame's source line and its ^^^ markers
        in_frame = False
        if line.startswith("Traceback (most recent call last)") or line.startswith("During handling of the above"):
            continue
        if line.strip():
            kept.append(line)
    return kept[-limit:]


def _is_storage_event(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and isinstance(records[0], dict) and "eventSource" in records[0]


def output_files(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return sorted(path for path in output_dir.rglob("*") if path.is_file())


def describe_outputs(output_dir: Path) -> list[dict[str, Any]]:
    """The output record of an invocation: each file's path (relative to the folder) and size."""
    return [{"name": str(p.relative_to(output_dir)), "size": p.stat().st_size} for p in output_files(output_dir)]


def sync_response(output_dir: Path, log: bytes) -> bytes:
    """What a synchronous invocation answers, by OSCAR's rules."""
    files = output_files(output_dir)
    if len(files) == 1:
        return base64.b64encode(files[0].read_bytes())
    if files:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, arcname=str(path.relative_to(output_dir)))
        return base64.b64encode(buffer.getvalue())
    return log
