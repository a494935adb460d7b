"""The example notebooks and pipelines (the repository's notebooks/) in every user's files, kept fresh.

Each user server copies them into `notebooks/` of the user's folder at start, so a new user's first
"Run pipeline notebooks/detect_classify.pipeline" finds it. Later starts (and Refresh, in the panel or
POST /reeflab/api/examples) bring each file up to the platform's latest version only where the user has
not changed it: the hash of every copy the platform made is kept (in the user's Jupyter data folder), an
edited file is left as it is and reported, and a deleted one comes back on Refresh only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Unicode, default
from traitlets.config import LoggingConfigurable

from .files import write_private

SKIP = {"work", "report", ".ipynb_checkpoints", "__pycache__"}  # what runs of the examples leave beside them


def shipped_examples() -> Path:
    """$REEFLAB_EXAMPLES_DIR, else the repository's notebooks/ (editable installs), else the installed copy."""
    if os.environ.get("REEFLAB_EXAMPLES_DIR"):
        return Path(os.environ["REEFLAB_EXAMPLES_DIR"])
    repository = Path(__file__).resolve().parents[2] / "notebooks"
    return repository if repository.is_dir() else Path(sys.prefix) / "share" / "reeflab" / "examples"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ExamplesService(LoggingConfigurable):
    """Copies the examples into a user's folder and refreshes the copies the user left untouched."""

    source = Unicode(config=True, help="Folder of the shipped examples (default: shipped_examples())")
    folder = Unicode("notebooks", config=True, help="Where they go, relative to the user's root folder")
    copy_at_start = Bool(
        config=True, help="Copy and refresh them when the server starts (default: in servers a JupyterHub spawned)"
    )
    manifest = Unicode(config=True, help="Hashes of the copies made (default: in the user's Jupyter data folder)")
    notebook_root = Unicode(help="The Jupyter server's root folder")

    @default("source")
    def _default_source(self) -> str:
        return str(shipped_examples())

    @default("copy_at_start")
    def _default_copy_at_start(self) -> bool:
        return bool(os.environ.get("JUPYTERHUB_USER"))

    @default("manifest")
    def _default_manifest(self) -> str:
        return str(Path(jupyter_data_dir()) / "reeflab" / "examples.json")

    @default("notebook_root")
    def _default_notebook_root(self) -> str:
        return os.getcwd()

    def files(self) -> list[str]:
        """The shipped examples, as paths relative to the source folder."""
        source = Path(self.source)
        if not source.is_dir():
            return []
        found = []
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if path.is_file() and not SKIP.intersection(relative.parts[:-1]) and not path.name.startswith("."):
                found.append(relative.as_posix())
        return found

    def sync(self, restore: bool = False) -> dict[str, Any]:
        """Copy what is new, refresh what the user left untouched, keep what they edited.

        restore: also copy again the examples the user deleted (an explicit Refresh; a start does not).
        """
        source, target = Path(self.source), Path(self.notebook_root) / self.folder
        manifest = Path(self.manifest)
        try:
            made: dict[str, str] = json.loads(manifest.read_text())
        except (OSError, ValueError):
            made = {}
        report: dict[str, Any] = {"folder": self.folder, "added": [], "updated": [], "kept": [], "deleted": []}
        for relative in self.files():
            shipped, copy = source / relative, target / relative
            latest = _digest(shipped)
            if copy.is_file():
                current = _digest(copy)
                if current == latest:
                    made[relative] = latest
                    continue
                if made.get(relative) != current:  # the user changed it: theirs
                    report["kept"].append(relative)
                    continue
                what = "updated"
            elif copy.exists() or (relative in made and not restore):
                report["deleted"].append(relative)  # removed (or replaced by a folder) on purpose
                continue
            else:
                what = "added"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shipped, copy)
            made[relative] = latest
            report[what].append(relative)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        write_private(manifest, json.dumps(made, indent=1, sort_keys=True))
        if report["added"] or report["updated"]:
            self.log.info(
                "examples in %s: %d added, %d updated, %d edited by you kept",
                target,
                len(report["added"]),
                len(report["updated"]),
                len(report["kept"]),
            )
        return report
