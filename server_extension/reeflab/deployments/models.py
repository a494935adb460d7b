"""Deployments as users create and see them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..runs.models import RunRecord, RunRequest, check_identifiers
from ..storage.models import NAME

State = Literal["queued", "starting", "ready", "failed", "stopped"]
Kind = Literal["deployment", "try"]
STORAGE_ENV = "REEFLAB_STORAGE_"  # + a mounted connection's name: where the module finds it
# set by the platform for every deployment; a user may not override them
RESERVED_ENV = ("DEEPAAS_V2_MODEL", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PATH", "HOME")


class Hardware(BaseModel):
    """What a deployment gets: within the limits of the chosen profile."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(gt=0, le=1024)
    memory_MB: int = Field(gt=0)
    gpu: int = Field(0, ge=0)


class HardwareChoice(BaseModel):
    """Hardware as asked for: what is left out is what the module recommends, within the profile."""

    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(None, gt=0, le=1024, description="CPUs (fractions allowed), e.g. 1.5")
    memory_MB: int | None = Field(None, gt=0, description="Memory in MB, e.g. 2000 for 2 GB")
    gpu: int | None = Field(None, ge=0, description="Whole GPUs; 0 for none")

    def over(self, base: Hardware) -> Hardware:
        """`base` with what this choice sets."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


class RestartRequest(BaseModel):
    """POST /reeflab/api/deployments/<id>/restart (an empty body restarts it as it was)"""

    model_config = ConfigDict(extra="forbid")

    hardware: HardwareChoice | None = Field(None, description="Change its hardware, e.g. {'memory_MB': 2000}")


class DeploymentRequest(RunRequest):
    """POST /reeflab/api/deployments"""

    module: str = Field(min_length=1, description="Marketplace module id, e.g. 'fish-detector'")
    kind: Kind = "deployment"
    hardware: HardwareChoice | None = Field(
        None, description="cpu, memory_MB, gpu: each left out is what the module recommends, within the profile"
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables")
    storage: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Your storage connections to mount; the module finds each at $REEFLAB_STORAGE_<NAME>",
    )

    @field_validator("storage")
    @classmethod
    def _storage_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not NAME.match(name):
                raise ValueError(f"'{name}' is not a storage connection name; list yours at /reeflab/api/storage")
        return list(dict.fromkeys(names))

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        check_identifiers(env, "an environment variable name")
        for name in env:
            if name in RESERVED_ENV or name.startswith(STORAGE_ENV):
                raise ValueError(f"{name} is set by ReefLab and cannot be overridden")
        return env


def storage_env(name: str) -> str:
    """REEFLAB_STORAGE_<NAME>: where a deployment finds mounted connection `name`."""
    return STORAGE_ENV + name.upper().replace("-", "_")


class Deployment(RunRecord):
    """A deployment and everything the platform keeps about it (runtime details stay server-side)."""

    ACTIVE_STATES: ClassVar[tuple[str, ...]] = ("queued", "starting", "ready")
    ENDED_AT: ClassVar[str] = "stopped_at"

    module: str
    entry_point: str
    kind: Kind
    hardware: Hardware
    env: dict[str, str] = Field(default_factory=dict)
    storage: list[str] = Field(default_factory=list, description="Storage connections mounted in it")
    warnings: list[str] = Field(
        default_factory=list, description="Where its hardware is below what the module recommends (not refused)"
    )
    limits: Hardware | None = Field(None, description="The most its profile allows")
    suggestion: Hardware | None = Field(
        None, description="After it failed for lack of memory: the hardware to restart it with"
    )
    state: State = "queued"
    ready_at: datetime | None = None
    stopped_at: datetime | None = None
    expires: datetime | None = None

    def public(self) -> dict[str, Any]:
        """What the API returns: no runtime internals, environment values hidden (they may be secrets)."""
        data = self.model_dump(mode="json", exclude={"runtime", "env"})
        data["env"] = sorted(self.env)
        data["path"] = f"reeflab/deployments/{self.id}/"
        return data
