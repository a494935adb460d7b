"""Monitoring settings as users send them."""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    module_samples: bool = Field(
        False,
        description="Compare with the images the deployed module ships (its samples folder, at least 20) instead "
        "of a folder of yours",
    )
    window: int = Field(50, ge=10, le=1000, description="Recent inputs each evaluation compares with the reference")
    every: int | None = Field(
        None, ge=1, le=1000, description="Evaluate after this many new inputs; default: the window size"
    )
    alpha: float = Field(0.01, gt=0, le=0.2, description="A window with a p-value below this raises an alert")
    permutations: int = Field(500, ge=100, le=5000, description="Permutations of the test (p-value resolution)")
    webhook: str | None = Field(
        None,
        max_length=2000,
        description="An http(s) URL that gets a JSON POST when an alert is raised or cleared (optional)",
    )

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"give an http:// or https:// URL with a host, not {value!r}")
        return value

    @model_validator(mode="after")
    def _reference_when_enabled(self) -> DriftRequest:
        if self.enabled and self.reference and self.module_samples:
            raise ValueError("give either a 'reference' folder or 'module_samples', not both")
        if self.enabled and not (self.reference or self.module_samples):
            raise ValueError("name a 'reference' folder of images to compare the inputs with (or 'module_samples')")
        return self
