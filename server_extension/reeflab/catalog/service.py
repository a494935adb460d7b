"""CatalogService: the marketplace as the REST API, the Python client and the panel see it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import NotFound
from ..limits import size_text
from ..profiles import HardwareProfile, ProfileCatalog
from .index import CatalogIndex
from .models import ModuleEntry
from .sources import RemoteIndex, installed_entries

SOURCE_ORDER = {"builtin": 0, "installed": 1, "remote": 2, "registered": 3}


class CatalogService(LoggingConfigurable):
    """Module entries from every source, merged by id (built-in first), searchable with facets."""

    remote_indexes = List(
        Unicode(),
        config=True,
        help="URLs (https:// or file://) of remote catalogue indexes in JSON or YAML",
    )

    @default("remote_indexes")
    def _default_remote_indexes(self) -> list[str]:
        return [u for u in os.environ.get("REEFLAB_CATALOG_INDEXES", "").split() if u]

    cache_dir = Unicode(config=True, help="Where remote indexes are cached")

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reeflab" / "catalog")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._index: CatalogIndex | None = None
        self._entries: dict[str, ModuleEntry] = {}
        self._remotes = [RemoteIndex(url, Path(self.cache_dir)) for url in self.remote_indexes]
        # more entries, from whoever makes modules (training registers the user's retrained models)
        self.sources: list[Callable[[], list[ModuleEntry]]] = []

    def add_remote(self, url: str, headers: dict[str, str]) -> None:
        """One more remote index, asked with these headers (the platform's catalogue service, with a token)."""
        self._remotes.append(RemoteIndex(url, Path(self.cache_dir), headers=headers))

    registry_dir = Unicode(config=True, help="Where the user's registered (retrained) models are kept")

    @default("registry_dir")
    def _default_registry_dir(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        return str(Path(jupyter_data_dir()) / "reeflab" / "models")

    def reload(self) -> None:
        """Rebuild from installed modules, cached indexes and registered models (no re-fetch)."""
        self._build(refresh=False)

    def refresh(self) -> dict[str, Any]:
        """Reload installed modules and re-fetch remote indexes; returns counts and fetch errors."""
        return self._build(refresh=True)

    def _build(self, refresh: bool) -> dict[str, Any]:
        found = installed_entries()
        for remote in self._remotes:
            found.extend(remote.entries(refresh=refresh))
        for source in self.sources:
            try:
                found.extend(source())
            except (OSError, ValueError) as err:  # a damaged source must not break the catalogue
                self.log.warning("modules from %s could not be read: %s", getattr(source, "__qualname__", source), err)
        merged: dict[str, ModuleEntry] = {}
        for entry in sorted(found, key=lambda e: SOURCE_ORDER[e.source]):
            merged.setdefault(entry.id, entry)
        with self._lock:
            self._entries = merged
            self._index = CatalogIndex(list(merged.values()))
        errors = [r.error for r in self._remotes if r.error]
        return {"modules": len(merged), "invalid": sum(not e.valid for e in merged.values()), "errors": errors}

    def index(self) -> CatalogIndex:
        if self._index is None:
            self._build(refresh=False)
        return self._index

    def search(self, query: str = "", filters: dict[str, list[str]] | None = None, **options):
        return self.index().search(query, filters or {}, **options)

    def get(self, module_id: str) -> ModuleEntry:
        self.index()
        try:
            return self._entries[module_id]
        except KeyError:
            raise NotFound(f"No module '{module_id}' in the marketplace; search the catalogue for its id.") from None

    def deployment_form(self, module_id: str, profiles: ProfileCatalog, groups: list[str]) -> dict[str, Any]:
        """The hardware a user may give this module, pre-filled from its inference recommendation.

        `resources.inference` is a recommendation (as on AI4OS): a profile below it is still offered, with
        what it lacks in `reason`; only the profiles the user's groups allow are offered at all.
        """
        entry = self.get(module_id)
        needs = inference_needs(entry)
        allowed = profiles.allowed(groups)
        choices = [{**profile_choice(p, needs), "image": profiles.image_of(p)} for p in allowed]
        fitting = [c for c in choices if c["fits"]]
        # the default profile if it fits, else the first that fits; when none does, the default all the same
        among = fitting or choices
        default_choice = next((c for c in among if c["default"]), among[0] if among else None)
        reason = None
        if not fitting:
            reason = (
                f"{entry.title} recommends {describe_needs(needs)} for inference, more than any hardware you may use; "
                "it can still be deployed on less, where it may be slow or fail."
            )
            elsewhere = [p.slug for p in profiles.profiles if p not in allowed and fits(p, needs)]
            if elsewhere:
                reason += f" Profiles that would fit ({', '.join(elsewhere)}) are reserved for other groups."
        return {
            "module": entry.id,
            "title": entry.title,
            "deployable": entry.deployable,
            "problems": entry.problem_text() if entry.entry_point is not None and not entry.valid else None,
            "needs": needs,
            "profiles": choices,
            "default": default_choice["slug"] if default_choice else None,
            "reason": reason,
        }


def inference_needs(entry: ModuleEntry) -> dict[str, int]:
    """What the module recommends for inference (ai4-metadata resources.inference), 0 where it says nothing."""
    resources = entry.metadata.get("resources")
    inference = resources.get("inference") if isinstance(resources, dict) else None
    inference = inference if isinstance(inference, dict) else {}
    needs = {}
    for key in ("cpu", "gpu", "memory_MB", "gpu_memory_MB"):
        try:
            needs[key] = int(inference.get(key) or 0)
        except (TypeError, ValueError):  # invalid metadata may hold anything
            needs[key] = 0
    return needs


def below_recommendation(hardware: dict[str, float], needs: dict[str, int]) -> list[str]:
    """Warnings for the hardware a deployment gets below what the module recommends (never a refusal)."""
    lacks = []
    if hardware["cpu"] < needs["cpu"]:
        lacks.append(f"{needs['cpu']} CPU (gets {hardware['cpu']:g})")
    if hardware["memory_MB"] < needs["memory_MB"]:
        recommended, given = size_text(needs["memory_MB"] * 10**6), size_text(hardware["memory_MB"] * 10**6)
        lacks.append(f"{recommended} of memory (gets {given})")
    if hardware["gpu"] < needs["gpu"]:
        lacks.append(f"{needs['gpu']} GPU (gets {hardware['gpu']:g})")
    if not lacks:
        return []
    return [f"The module recommends {', '.join(lacks)} for inference: with less it may be slow or fail."]


def describe_needs(needs: dict[str, int]) -> str:
    parts = []
    if needs["cpu"]:
        parts.append(f"{needs['cpu']} CPU")
    if needs["memory_MB"]:
        parts.append(f"{size_text(needs['memory_MB'] * 10**6)} of memory")
    if needs["gpu"]:
        parts.append(f"{needs['gpu']} GPU")
    return ", ".join(parts) or "nothing special"


def fits(profile: HardwareProfile, needs: dict[str, int]) -> bool:
    return not shortfalls(profile, needs)


def shortfalls(profile: HardwareProfile, needs: dict[str, int]) -> list[str]:
    """What a profile lacks to run a module, in words."""
    missing = []
    if profile.cpu < needs["cpu"]:
        missing.append(f"{needs['cpu']} CPU (has {profile.cpu:g})")
    if profile.memory_bytes < needs["memory_MB"] * 10**6:
        missing.append(f"{size_text(needs['memory_MB'] * 10**6)} memory (has {size_text(profile.memory_bytes)})")
    if profile.gpu_count < needs["gpu"]:
        missing.append(f"{needs['gpu']} GPU (has {profile.gpu_count})")
    return missing


def profile_choice(profile: HardwareProfile, needs: dict[str, int]) -> dict[str, Any]:
    """One hardware choice: the profile's limits, the values pre-filled for the module, and why not."""
    missing = shortfalls(profile, needs)
    memory_mb = profile.memory_bytes // 10**6
    return {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "default": profile.default,
        "fits": not missing,
        "reason": f"below its recommendation of {', '.join(missing)}" if missing else None,
        "limits": {"cpu": profile.cpu, "memory_MB": memory_mb, "gpu": profile.gpu_count},
        # what the module asks for, at least 1 CPU, never more than the profile gives
        "prefill": {
            "cpu": min(max(needs["cpu"], 1), profile.cpu),
            "memory_MB": min(needs["memory_MB"] or memory_mb, memory_mb),
            "gpu": min(needs["gpu"], profile.gpu_count),
        },
        "gpu_model": profile.gpu.model if profile.gpu else None,
    }
