"""Where catalogue entries come from: installed DEEPaaS modules and remote catalogue indexes."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import site
import time
import urllib.request
import warnings
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import yaml

from ..modules.contract import ENTRY_POINT_GROUP, OPTIONAL, missing_functions, retrain_parameters, says_untrained
from ..modules.metadata import MetadataProblem, find_metadata_file, read_metadata_file, validate_metadata
from .models import ModuleEntry, slug

log = logging.getLogger(__name__)


def entry_from_metadata(
    module_id: str, source: str, document: Any, entry_point: str | None = None, problems: list | None = None
) -> ModuleEntry:
    """A catalogue entry whose validity is decided by the ai4-metadata schema."""
    problems = list(problems or []) + validate_metadata(document)
    return ModuleEntry(
        id=module_id,
        source=source,
        metadata=document if isinstance(document, dict) else {},
        valid=not problems,
        problems=problems,
        entry_point=entry_point,
    )


def _metadata_of(obj: Any, ep: EntryPoint | None = None) -> tuple[Any, list[MetadataProblem]]:
    """ai4-metadata of a loaded module: what get_metadata() gives in ai4-metadata form, else the package's
    `ai4-metadata.yml` (as AI4OS modules ship it), else what plain DEEPaaS metadata says."""
    problems: list[MetadataProblem] = []
    meta: Any = None
    if callable(getattr(obj, "get_metadata", None)):  # optional: DEEPaaS answers generic metadata without it
        try:
            meta = obj.get_metadata()
        except NotImplementedError:
            meta = None
        except Exception as err:  # a third-party module's failure must not break the catalogue
            # DEEPaaS's /v2/models/ would fail the same way: the module cannot be served
            problems.append(MetadataProblem(field="", message=f"get_metadata() failed: {err}"))
    if isinstance(meta, dict) and isinstance(meta.get("ai4_metadata"), dict):
        return meta["ai4_metadata"], problems
    if isinstance(meta, dict) and "metadata_version" in meta:
        return meta, problems
    found = find_metadata_file(obj, ep)
    if found is not None:
        document, unreadable = read_metadata_file(found)
        return document, problems + unreadable
    # a plain DEEPaaS module: keep what it says, and list what ai4-metadata is missing
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") or (ep.name if ep is not None else "")
    summary = str(meta.get("description", ""))
    return {"title": name, "summary": summary, "description": summary}, problems


def installed_entries() -> list[ModuleEntry]:
    """Every installed package exposing a `deepaas.v2.model` entry point, ReefLab's own included."""
    # a module pip-installed (editable) since this process started is only importable once its
    # .pth file is read: re-read them, as a refresh after `pip install -e` must find it
    for directory in site.getsitepackages():
        site.addsitedir(directory)
    importlib.invalidate_caches()
    entries = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entries.append(_installed_entry(ep))
    return entries


def _installed_entry(ep: EntryPoint) -> ModuleEntry:
    source = "builtin" if ep.value.startswith("reeflab.") else "installed"
    module_id = slug(ep.name)
    try:
        with warnings.catch_warnings():
            # a module's own deprecation warnings (old webargs, distutils...) are not the catalogue's
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = ep.load()
    except Exception as err:
        log.warning("module %s failed to load: %s", ep.name, err)
        problem = MetadataProblem(field="", message=f"the module failed to load: {type(err).__name__}: {err}")
        return ModuleEntry(id=module_id, source=source, valid=False, problems=[problem], entry_point=ep.name)
    document, problems = _metadata_of(obj, ep)
    missing = missing_functions(obj)
    if missing:
        optional = ", ".join(OPTIONAL)
        message = f"missing DEEPaaS function: {', '.join(missing)} (required; optional: {optional})"
        problems.append(MetadataProblem(field="", message=message))
    entry = entry_from_metadata(module_id, source, document, entry_point=ep.name, problems=problems)
    entry.trained = not says_untrained(obj)
    entry.retrain = retrain_parameters(obj, ep.name)
    return entry


class RemoteIndex:
    """A remote catalogue: an HTTP(S) or file URL to a JSON/YAML list of modules, cached on disk.

    The document is `{"modules": [{"id": ..., "metadata": {...ai4-metadata...}}, ...]}` (or the
    list itself). It is fetched on the first use and on an explicit refresh only.
    """

    def __init__(self, url: str, cache_dir: Path, timeout: float = 20, headers: dict[str, str] | None = None):
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.cache = Path(cache_dir) / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.json"
        self.error: str | None = None

    def entries(self, refresh: bool = False) -> list[ModuleEntry]:
        if refresh or not self.cache.exists():
            self._fetch()
        if not self.cache.exists():
            return []
        cached = json.loads(self.cache.read_text())
        return [self._entry(item) for item in cached["modules"]]

    def _fetch(self) -> None:
        try:
            request = urllib.request.Request(self.url, headers=self.headers)  # noqa: S310 (a configured URL)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                document = yaml.safe_load(response.read())
            modules = document.get("modules") if isinstance(document, dict) else document
            if not isinstance(modules, list):
                raise ValueError("expected a list of modules, or a mapping with a 'modules' list")
        except (OSError, ValueError, yaml.YAMLError) as err:
            self.error = f"{self.url}: {err}"
            log.warning("catalogue index %s could not be fetched: %s", self.url, err)
            return
        self.error = None
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": self.url, "fetched": time.time(), "modules": modules}))
        tmp.replace(self.cache)

    def _entry(self, item: Any) -> ModuleEntry:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            problem = MetadataProblem(field="id", message="each module of a remote index needs an 'id'")
            return ModuleEntry(id="invalid-entry", source="remote", valid=False, problems=[problem])
        entry = entry_from_metadata(slug(item["id"]), "remote", item.get("metadata"))
        entry.published_check = item.get("check") if isinstance(item.get("check"), dict) else None
        return entry
