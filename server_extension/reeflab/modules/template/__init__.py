"""`reeflab module new`: scaffold a module package that follows the DEEPaaS v2 contract.

The files under package/ are string.Template texts: $name (module id), $package (Python
package), $title; __package__ in a path becomes the package name, and a leading 'dot-' a '.'
(.github: package data leaves hidden folders out).
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template

from ...errors import BadRequest

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def new_module(name: str, parent: Path, title: str | None = None) -> Path:
    """Write a new module package `<parent>/<name>/`; refuses bad names and existing folders."""
    if not NAME.match(name):
        raise BadRequest(f"'{name}' is not a module name: use lower-case words joined by '-', e.g. 'fish-counter'")
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise BadRequest(f"'{name}' cannot be a Python package name; choose another")
    target = Path(parent) / name
    if target.exists():
        raise BadRequest(f"{target} already exists; choose another name or folder")
    values = {"name": name, "package": package, "title": title or name.replace("-", " ").capitalize()}
    root = resources.files(__name__).joinpath("package")
    for source in _files(root):
        relative = re.sub(r"(^|/)dot-", r"\1.", str(source.relative_to(root)).replace("__package__", package))
        destination = target / relative.removesuffix(".tmpl")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(Template(source.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return target


def _files(root) -> list[Path]:
    root = Path(str(root))
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
