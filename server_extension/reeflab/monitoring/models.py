"""Monitoring settings as users send them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DriftRequest(BaseModel):
    """PUT /reeflab/api/deployments/<id>/drift"""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="Watch this deployment's inputs for drift (false: stop and forget its window)")
    reference: str | None = Field(
        None,
        min_length=1,
        description="A folder of your files (relative to your Jupyter root) with at least 20 images that look like "
        "what the model was trained on, e.g. 'data/reference'",
    )
    window: int = Field(50, ge=10, le=1000, description="Recent inputs each evaluation compares with the reference")
    every: int | None = Field(
        None, ge=1, le=1000, description="Evaluate after this many new inputs; default: the window size"
    )
    alpha: float = Field(0.01, gt=0, le=0.2, description="A window with a p-value below this raises an alert")
    permutations: int = Field(500, ge=100, le=5000, description="Permutations of the test (p-value resolution)")

    @model_validator(mode="after")
    def _reference_when_enabled(self) -> DriftRequest:
        if self.enabled and not self.reference:
            raise ValueError("name a 'reference' folder of images to compare the inputs with")
        return self
