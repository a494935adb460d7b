"""ReefLab: an AI platform for scientists, built as JupyterHub/JupyterLab extensions."""

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict]:
    # Imported lazily so that hub-side code (reeflab.hub) does not pull in jupyter_server.
    from .extension import ReefLabApp

    return [{"module": "reeflab", "app": ReefLabApp}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "reeflab"}]
