"""The DEEPaaS v2 model contract ReefLab modules follow (and any DEEPaaS module already does)."""

from __future__ import annotations

from typing import Any

ENTRY_POINT_GROUP = "deepaas.v2.model"
CONTRACT = ("get_metadata", "warm", "get_predict_args", "predict", "get_train_args", "train")
# DEEPaaS's ModelWrapper (deepaas/model/v2/wrapper.py) answers for every other function when a module
# lacks it (no warm-up, generic metadata, no arguments, 501 on train); only predict makes it servable
REQUIRED = ("predict",)
OPTIONAL = tuple(name for name in CONTRACT if name not in REQUIRED)


def missing_functions(obj: Any) -> list[str]:
    """The required contract functions a loaded module does not provide (DEEPaaS would answer 501 for them)."""
    return [name for name in REQUIRED if not callable(getattr(obj, name, None))]


def predict_args(obj: Any) -> dict[str, Any]:
    """The module's predict arguments as DEEPaaS reads them: none when it has no get_predict_args."""
    try:
        return dict(obj.get_predict_args() or {})
    except (AttributeError, NotImplementedError):
        return {}


def file_args(fields: dict[str, Any]) -> list[str]:
    """The names of the predict arguments that take a file (webargs fields of type 'file'), in order."""
    return [name for name, field in fields.items() if getattr(field, "metadata", {}).get("type") == "file"]


def says_untrained(obj: Any) -> bool:
    """Whether a module says it has no trained weights (ReefLab's addition to the contract: an attribute
    `trained` that is False, e.g. a network built from a yaml): the panel offers training instead of Try."""
    return getattr(obj, "trained", True) is False


def retrain_parameters(obj: Any, entry_point: str) -> dict[str, str] | None:
    """Parameters of the retrain pipeline (notebooks/retrain.pipeline) that train a module without trained
    weights, from its `retrain_parameters` (ReefLab's addition); None when it has none."""
    params = getattr(obj, "retrain_parameters", None)
    if not isinstance(params, dict):
        return None
    return {"BASE_MODULE": entry_point, **{str(k): str(v) for k, v in params.items()}}
