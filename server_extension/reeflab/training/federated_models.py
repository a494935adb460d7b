"""Federated servers and tokens as users create and see them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Strategy = Literal["FedAvg", "FedProx", "FedAdam"]
State = Literal["running", "finished", "failed", "stopped"]
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")


class ServerRequest(BaseModel):
    """POST /reeflab/api/federated/servers"""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=120)
    strategy: Strategy = "FedAvg"
    rounds: int = Field(3, ge=1, le=1000)
    min_clients: int = Field(2, ge=1, le=1000, description="Clients that must take part in every round")
    local_epochs: int = Field(1, ge=1, le=1000, description="Epochs each client trains per round")
    proximal_mu: float = Field(0.1, ge=0, le=100, description="FedProx: weight of the proximal term")
    server_learning_rate: float = Field(0.1, gt=0, le=10, description="FedAdam: server-side learning rate (eta)")
    round_timeout: float = Field(600, ge=1, le=86400, description="Seconds a round may wait for its clients")
    app: str | None = Field(
        None,
        max_length=4096,
        description="Folder of your own Flower App (a pyproject.toml with [tool.flwr.app]), absolute or relative "
        "to your files; default: the built-in task, which the settings above configure",
    )
    run_config: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="Your own Flower App's run config overrides (flwr run --run-config)"
    )

    @model_validator(mode="after")
    def _run_config_only_for_own_app(self) -> ServerRequest:
        if self.run_config and not self.app:
            raise ValueError("run_config is for your own Flower App ('app'); the built-in task takes the fields above")
        return self


class TokenRequest(BaseModel):
    """POST /reeflab/api/federated/tokens"""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What the token is for, e.g. the site that will use it")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _TOKEN_NAME.match(name):
            raise ValueError("use 1-64 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit")
        return name


class FederatedServer(BaseModel):
    """One federation (a SuperLink and its Flower run) and everything the platform keeps about it."""

    id: str
    owner: str
    title: str
    config: ServerRequest
    state: State = "running"
    reason: str | None = None
    address: str = Field(description="HOST:PORT of the SuperLink's Fleet API, where sites' SuperNodes connect")
    root_certificates: str | None = Field(
        None, description="PEM of the federation's CA: sites verify the SuperLink with it"
    )
    created: datetime
    stopped_at: datetime | None = None
    runtime: dict[str, Any] = Field(default_factory=dict, description="pid, start time, bind address")

    @property
    def active(self) -> bool:
        return self.state == "running"

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"runtime"})
