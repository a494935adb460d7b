"""ReefLab from Python (notebooks, scripts): the same REST API the panel uses."""

from . import catalog
from .connection import Connection, ReefLabClientError

__all__ = ["Connection", "ReefLabClientError", "catalog"]
