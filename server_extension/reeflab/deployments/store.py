"""Deployments on disk: one folder each (state, working dir, log), private to the user."""

from __future__ import annotations

import os
from pathlib import Path

from ..files import write_private
from .models import Deployment


class DeploymentStore:
    """`<root>/<id>/deployment.json`, written atomically; survives server restarts."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, deployment_id: str) -> Path:
        return self.root / deployment_id

    def save(self, deployment: Deployment) -> None:
        folder = self.folder(deployment.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(folder / "deployment.json", deployment.model_dump_json(indent=1))

    def load_all(self) -> list[Deployment]:
        if not self.root.exists():
            return []
        found = []
        for path in sorted(self.root.glob("*/deployment.json")):
            found.append(Deployment.model_validate_json(path.read_text()))
        return found
