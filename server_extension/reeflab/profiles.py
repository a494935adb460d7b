"""Hardware profiles: one file (hub_config/profiles.yaml) read by the hub and the user servers.

The hub builds KubeSpawner's `profile_list` from it; the server extension lists the
profiles a user may pick for deployments, jobs and serverless functions. Profiles are
gated by JupyterHub group (VO membership under OIDC login).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BadRequest, Forbidden, ReefLabError

_MEMORY_UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$")


def memory_bytes(value: str | int) -> int:
    """Parse a memory size as Kubernetes and KubeSpawner write it ("4G", "512Mi", 1024)."""
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.match(str(value))
    if not match:
        raise ValueError(f"memory {value!r} is not a size such as '4G', '512Mi' or '16Gi'")
    number, unit = match.groups()
    return int(float(number) * _MEMORY_UNITS[unit or ""])


class GPURequest(BaseModel):
    """Accelerators of a profile: any Kubernetes extended resource (nvidia.com/gpu, a MIG slice...)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(1, ge=0)
    resource: str = Field("nvidia.com/gpu", pattern=r"^[a-z0-9.\-]+/[A-Za-z0-9.\-_]+$")
    model: str | None = Field(None, description="Human-readable GPU model, e.g. 'Tesla T4'")


class HardwareProfile(BaseModel):
    """One choice of hardware a user may get for a server, a deployment or a job."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$")
    display_name: str
    description: str = ""
    default: bool = False
    cpu: float = Field(gt=0, description="CPU cores (guarantee and limit)")
    memory: str = Field(description="Memory guarantee and limit, e.g. '8G'")
    gpu: GPURequest | None = None
    image: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list, description="JupyterHub groups allowed to use it; empty: everyone")

    @field_validator("memory")
    @classmethod
    def _memory_parses(cls, value: str) -> str:
        memory_bytes(value)
        return value

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)

    @property
    def gpu_count(self) -> int:
        return self.gpu.count if self.gpu else 0

    def allows(self, groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(groups))

    def public_model(self) -> dict:
        """What users see: everything except who else may use it."""
        data = self.model_dump(exclude={"groups"})
        data["memory_bytes"] = self.memory_bytes
        return data


class ProfileCatalog(BaseModel):
    """The whole profiles file: the default image and the profiles, in display order."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image of profiles that name none")
    profiles: list[HardwareProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ProfileCatalog:
        slugs = [p.slug for p in self.profiles]
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        if dupes:
            raise ValueError(f"profile slugs must be unique; repeated: {', '.join(dupes)}")
        if sum(p.default for p in self.profiles) > 1:
            raise ValueError("at most one profile may be marked default: true")
        return self

    def image_of(self, profile: HardwareProfile) -> str:
        return profile.image or self.image

    def allowed(self, groups: Iterable[str]) -> list[HardwareProfile]:
        groups = set(groups)
        return [p for p in self.profiles if p.allows(groups)]

    def choose(self, slug: str | None, groups: Iterable[str]) -> HardwareProfile:
        """The profile a user asked for, or their default; a clear error when they may not."""
        allowed = self.allowed(groups)
        if not slug:
            if not allowed:
                raise Forbidden("No hardware profile is available to you; ask an admin to add you to a group.")
            return next((p for p in allowed if p.default), allowed[0])
        known = {p.slug: p for p in self.profiles}
        if slug not in known:
            names = ", ".join(p.slug for p in allowed) or "none"
            raise BadRequest(f"Unknown hardware profile '{slug}'. Profiles you may use: {names}.")
        profile = known[slug]
        if profile not in allowed:
            raise Forbidden(
                f"Hardware profile '{slug}' is reserved for members of "
                f"{', '.join(profile.groups)}; you are not a member."
            )
        return profile


def default_profiles_path() -> Path:
    """REEFLAB_PROFILES_FILE, else the copy installed with the package, else the repo's."""
    env = os.environ.get("REEFLAB_PROFILES_FILE")
    if env:
        return Path(env)
    installed = Path(sys.prefix) / "etc" / "reeflab" / "profiles.yaml"
    if installed.exists():
        return installed
    return Path(__file__).resolve().parents[2] / "hub_config" / "profiles.yaml"


def load_profiles(path: str | os.PathLike | None = None) -> ProfileCatalog:
    """Read and validate a profiles file; errors name the file and the field at fault."""
    path = Path(path) if path else default_profiles_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"hardware profiles file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ValueError(f"hardware profiles file {path} is not valid YAML: {err}") from None
    try:
        return ProfileCatalog.model_validate(data or {})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors())
        raise ValueError(f"hardware profiles file {path} is invalid: {problems}") from None


class ProfileStore:
    """The profiles file, re-read when it changes so operators can edit it without restarts."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._cached: tuple[float, ProfileCatalog] | None = None

    def catalog(self) -> ProfileCatalog:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            raise ReefLabError(f"hardware profiles file {self.path} does not exist; ask an admin") from None
        if self._cached is None or self._cached[0] != mtime:
            try:
                self._cached = (mtime, load_profiles(self.path))
            except ValueError as err:
                raise ReefLabError(f"{err}; ask an admin to fix it") from None
        return self._cached[1]
