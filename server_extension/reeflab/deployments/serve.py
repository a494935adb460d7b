"""`deepaas-run` on a Unix socket: `python -m reeflab.deployments.serve --model-name X --socket PATH`.

It exists because deepaas-run (DEEPaaS 2.5) can only listen on TCP, where any local process, any
user's, may call a deployment without authenticating. A socket file of mode 0600 in its owner's
private folder is reachable by the owner's processes only (the Jupyter server's authenticated
route among them). Everything else is deepaas-run's own: options, config files, logging, app,
workers, warm-up and predict; only the listener differs, so modules run unchanged under both.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import deepaas
from aiohttp import web
from aiohttp.web_log import AccessLogger
from deepaas import api, config
from deepaas.cmd import _shutdown
from deepaas.cmd import run as deepaas_run  # registers deepaas-run's own options (--base-path...)
from oslo_config import cfg
from oslo_log import log as oslo_log

from . import HEALTH_CHECK_HEADER

CONF = cfg.CONF
CONF.register_cli_opt(
    cfg.StrOpt("socket", required=True, help="Path of the Unix socket to serve on (created with mode 0600).")
)


def bind(path: Path) -> socket.socket:
    """A Unix socket bound at `path` with mode 0600 from its creation on (a stale one is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # no moment at which others could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    return sock


class AccessLog(AccessLogger):
    """aiohttp's access log without the platform's readiness checks: the log shows what callers did."""

    def log(self, request, response, time) -> None:
        if HEALTH_CHECK_HEADER not in request.headers:
            super().log(request, response, time)


def _remove(path: Path, inode: int) -> None:
    """Remove the socket file if it is still this process's (a restart may have bound a new one)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_ino == inode:
            path.unlink()


def main(argv: list[str] | None = None) -> None:
    """deepaas-run's main(), with the socket instead of --listen-ip/--listen-port."""
    _shutdown.handle_signals()
    config.config_and_logging(sys.argv if argv is None else argv)
    if CONF.base_path and not CONF.base_path.startswith("/"):
        sys.exit("Base path should start with a '/'.")
    path = Path(CONF.socket)
    sock = bind(path)
    inode = path.stat().st_ino
    print(deepaas_run.INTRO)
    print(f"DEEPaaS API on Unix socket {path}, V2 endpoint: {CONF.base_path}/v2", flush=True)
    oslo_log.getLogger("deepaas").info("Starting DEEPaaS version %s", deepaas.extract_version())
    app = api.get_app(
        enable_doc=CONF.doc_endpoint,
        enable_train=CONF.train_endpoint,
        enable_predict=CONF.predict_endpoint,
        base_path=CONF.base_path,
    )
    try:
        web.run_app(app, sock=sock, access_log_class=AccessLog)
    finally:
        _remove(path, inode)


if __name__ == "__main__":
    main()
