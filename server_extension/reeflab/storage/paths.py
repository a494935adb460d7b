"""Paths from users, confined: inside a connection's root, or inside the user's workspace."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadRequest


def remote_path(path: str) -> str:
    """'a/b/c' relative to the connection's root; '..' and control characters are refused, not resolved."""
    if any(ord(c) < 32 for c in path):
        raise BadRequest("Storage paths may not contain control characters.")
    parts = [p for p in path.replace("\\", "/").split("/") if p and p != "."]
    if ".." in parts:
        raise BadRequest(f"'{path}' leaves the connection's folder: '..' is not allowed in storage paths.")
    return "/".join(parts)


def folder_path(path: str) -> str:
    """A new folder's path ('a' or 'a/b'): remote_path's rules, and names every storage server takes."""
    if "\\" in path:
        raise BadRequest(f"'{path}': folder names may not contain '\\' (put '/' between folders).")
    path = remote_path(path)
    if not path:
        raise BadRequest("Name the new folder, e.g. 'fish-in' (or 'surveys/2026' for one inside another).")
    for part in path.split("/"):
        if part != part.strip():
            raise BadRequest(f"'{part}': folder names may not start or end with a space.")
        if len(part.encode()) > 255:
            raise BadRequest(f"'{part[:30]}...' is too long: a folder name has at most 255 bytes.")
    return path


def workspace_path(root: str | os.PathLike, path: str) -> Path:
    """An absolute path inside `root` (the workspace), symlinks resolved; anything outside is refused."""
    if any(ord(c) < 32 for c in path):
        raise BadRequest("Workspace paths may not contain control characters.")
    base = Path(root).resolve()
    target = (base / path.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        raise BadRequest(f"'{path}' is outside your workspace: give a path relative to your file browser's root.")
    return target


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
