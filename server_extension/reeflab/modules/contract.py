"""The DEEPaaS v2 model contract ReefLab modules follow (and any DEEPaaS module already does)."""

from __future__ import annotations

from typing import Any

ENTRY_POINT_GROUP = "deepaas.v2.model"
CONTRACT = ("get_metadata", "warm", "get_predict_args", "predict", "get_train_args", "train")


def missing_functions(obj: Any) -> list[str]:
    """The contract functions a loaded module does not provide."""
    return [name for name in CONTRACT if not callable(getattr(obj, name, None))]
