"""What `reeflab module check` checks: a module found from a folder or an installed module id, without importing
its code (that happens in the processes the checks start), and the digest of its source tree."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, entry_points
from pathlib import Path

from ..catalog.models import slug
from ..errors import BadRequest
from ..modules.contract import ENTRY_POINT_GROUP
from ..modules.metadata import METADATA_FILE

_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
_INSTALL_DIRS = ("site-packages", "dist-packages")
# what a module's folder holds besides its source: left out of its digest and of the scans
SKIPPED_DIRS = {"__pycache__", ".git", ".venv", "venv", "build", "dist", "node_modules", ".tox", ".ipynb_checkpoints"}


def skipped(part: str) -> bool:
    return part in SKIPPED_DIRS or part.endswith((".egg-info", "_cache"))


@dataclass
class Module:
    """A DEEPaaS module as the checks see it."""

    id: str
    entry_point: str  # its deepaas.v2.model entry point name
    package: Path  # the folder of its code
    root: Path  # its project: its tests, Dockerfile and licence are looked for here
    version: str = ""
    licence: str = ""  # the licence its distribution declares
    # an uninstalled folder: the path its code imports from, and the entry point DEEPaaS must find
    import_path: Path | None = None
    entry_point_value: str = ""

    @property
    def source(self) -> str:
        return str(self.root)

    def metadata_file(self) -> Path | None:
        """Its ai4-metadata.yml: next to its code, or above it up to its project's root."""
        for folder in (self.package, *self.package.parents):
            if (folder / METADATA_FILE).is_file():
                return folder / METADATA_FILE
            if folder == self.root:
                break
        return None

    def files(self) -> list[Path]:
        """Its source files (no caches, builds or virtual environments), sorted."""
        found = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not skipped(d)]  # not walked at all (a .venv is big)
            found.extend(Path(folder, f) for f in files if not f.endswith(".pyc"))
        return sorted(found)

    def digest(self) -> str:
        """sha256 of its source tree (names and contents): a changed module gets a new digest."""
        sha = hashlib.sha256()
        for path in self.files():
            sha.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            sha.update(hashlib.sha256(path.read_bytes()).digest())
        return sha.hexdigest()

    def python_path(self, scratch: Path) -> list[str]:
        """What PYTHONPATH needs for its code and its entry point to be found (nothing when it is installed):
        its import folder, and a distribution in `scratch` that declares only the entry point."""
        if self.import_path is None:
            return []
        name = re.sub(r"[-_.]+", "_", self.id)
        info = scratch / "entry-point" / f"{name}-{self.version or '0'}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {self.version or '0'}\n")
        (info / "entry_points.txt").write_text(
            f"[{ENTRY_POINT_GROUP}]\n{self.entry_point} = {self.entry_point_value}\n"
        )
        return [str(info.parent), str(self.import_path)]


def find_module(target: str) -> Module:
    """The module in folder `target`, else the installed module of that id; BadRequest when neither."""
    folder = Path(target).expanduser()
    if folder.is_dir():
        return _from_folder(folder.resolve())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if target in (ep.name, slug(ep.name)):
            return _installed(ep)
    raise BadRequest(f"'{target}' is neither a module folder nor an installed module id")


def _installed(ep: EntryPoint) -> Module:
    spec = importlib.util.find_spec(ep.module)
    if spec is None or not spec.origin:
        raise BadRequest(f"the code of module '{ep.name}' ({ep.module}) cannot be found")
    package = Path(spec.origin).resolve().parent
    dist = ep.dist
    siblings = [e for e in (dist.entry_points if dist else []) if e.group == ENTRY_POINT_GROUP]
    return Module(
        id=slug(ep.name),
        entry_point=ep.name,
        package=package,
        root=_project_root(package, several=len(siblings) > 1),
        version=dist.version if dist else "",
        licence=_distribution_licence(dist) if dist else "",
    )


def _project_root(package: Path, several: bool) -> Path:
    """The project folder above a module's code; the code's own folder where the project ships several modules
    (each is checked on its own) or none is found (an installed package)."""
    if several:
        return package
    for folder in (package, *package.parents):
        if folder.name in _INSTALL_DIRS:
            break
        if any((folder / name).is_file() for name in _PROJECT_FILES):
            return folder
    return package


def _distribution_licence(dist: Distribution) -> str:
    meta = dist.metadata
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return meta.get("License-Expression") or meta.get("License") or ", ".join(classifiers)


def _from_folder(folder: Path) -> Module:
    """A folder of an installed module's code (or its project's), else a project whose pyproject.toml declares
    one module (checked without installing it)."""
    inside = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = importlib.util.find_spec(ep.module)
        except ImportError:  # a broken installation: not this folder's module
            continue
        if spec and spec.origin and Path(spec.origin).resolve().is_relative_to(folder):
            inside.append(ep)
    if len(inside) == 1:
        return _installed(inside[0])
    if len(inside) > 1:
        names = ", ".join(sorted(ep.name for ep in inside))
        raise BadRequest(f"{folder} holds several modules ({names}): check one by its id")
    return _from_pyproject(folder)


def _from_pyproject(folder: Path) -> Module:
    pyproject = folder / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BadRequest(
            f"{folder} is not a module: no installed module in it, no readable pyproject.toml ({err})"
        ) from None
    declared = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    if len(declared) != 1:
        found = f"{len(declared)} ({', '.join(declared)})" if declared else "none"
        raise BadRequest(f'{pyproject} must declare one [project.entry-points."{ENTRY_POINT_GROUP}"]; it has {found}')
    name, value = next(iter(declared.items()))
    dotted = value.split(":")[0].strip()
    relative = Path(*dotted.split("."))
    for base in (folder / "src", folder):
        for code in (base / relative / "__init__.py", base / relative.with_suffix(".py")):
            if code.is_file():
                licence = project.get("license", "")
                return Module(
                    id=slug(name),
                    entry_point=name,
                    package=code.parent,
                    root=folder,
                    version=str(project.get("version", "")),
                    licence=licence.get("text", "") if isinstance(licence, dict) else str(licence),
                    import_path=base,
                    entry_point_value=value.strip(),
                )
    raise BadRequest(f"the code of module '{name}' ({dotted}) is not in {folder} or {folder / 'src'}")
