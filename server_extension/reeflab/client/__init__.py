"""ReefLab from Python (notebooks, scripts): the same REST API the panel uses."""

from . import annotation, catalog, checks, deployments, monitoring, serverless, storage, training
from .connection import Connection, ReefLabClientError
from .deployments import deploy

__all__ = [
    "Connection",
    "ReefLabClientError",
    "annotation",
    "catalog",
    "checks",
    "deploy",
    "deployments",
    "monitoring",
    "serverless",
    "storage",
    "training",
]
