"""Exposed services (OSCAR's `expose`): one long-running HTTP process per service, reached only through the engine.

A service whose FDL has `expose` runs its script (or, with `default_command` and a module, the module's
DEEPaaS API, what an AI4OS image runs by default) as a long-running process under its owner's account,
in the workers' bubblewrap sandbox and a cgroup with the service's CPU and memory, but with a network
namespace of its own: its `api_port` is reachable from nowhere else. The engine binds a Unix socket in
the service's 0700 folder and hands it to the sandbox, where reeflab.oscar_engine.bridge relays it to the
port; /system/services/<name>/exposed/<path> is proxied to that socket (routes_v4.ExposedHandler), as the
Jupyter server proxies deployments (jupyter-server-proxy's UnixResolver).

It starts when the service is created or the engine starts (min_scale >= 1; min_scale 0: at the first
request, and it stops when idle), is replaced when the service changes, restarted after a crash (not
sooner than RETRY_SECONDS after a failed start), and stops on delete and on /stop. One process runs per
service (OSCAR's min_scale > 1 and max_scale are kept and shown); what it prints goes to the service's
deployment log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_server_proxy.unixsock import UnixResolver
from tornado.httpclient import HTTPClientError
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from ..errors import ReefLabError
from ..processes import socket_path
from ..serverless.fdl import Expose, ServiceDefinition
from .dispatcher import stamp
from .pool import Worker, WorkerSpec

if TYPE_CHECKING:
    from .engine import OscarEngine

log = logging.getLogger(__name__)
RESOURCE_KIND = "exposed_service"  # OSCAR's resource_kind of an exposed service's deployment
RETRY_SECONDS = 30  # after a failed start or a crash, before the next try
PROBE_SECONDS = 1.0
DEEPAAS = ("-m", "deepaas.cmd.run", "--listen-ip", "127.0.0.1")  # an AI4OS image's default command


class NotReady(ReefLabError):
    status = 503


def exposed_prefix(base_url: str, name: str) -> str:
    """The public path the service is exposed under: <base url>/system/services/<name>/exposed."""
    parts = (*base_url.strip("/").split("/"), "system", "services", name, "exposed")
    return "/" + "/".join(part for part in parts if part)


def upstream_path(expose: Expose, prefix: str, rest: str, query: str = "") -> str:
    """What the service's HTTP server is asked for, as OSCAR's ingress rewrites it: the path below the prefix
    (`rewrite_target: false`, the default), or the whole public path (`rewrite_target: true`)."""
    path = prefix + rest if expose.rewrite_target else (rest if rest.startswith("/") else "/" + rest)
    return path + (f"?{query}" if query else "")


def _listen(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600 from its creation (the folder is 0700 anyway)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(umask)
    sock.listen(128)
    return sock


class ExposedInstance(Worker):
    """The process of one exposed service (bwrap > bridge > its program), its socket and the client to it."""

    def __init__(self, spec: WorkerSpec, definition: ServiceDefinition, prefix: str):
        super().__init__(spec)
        assert definition.expose is not None
        self.definition, self.expose, self.prefix = definition, definition.expose, prefix
        self.busy = False
        self.folder: Path | None = None
        self.socket: Path | None = None
        self.client: SimpleAsyncHTTPClient | None = None
        self.ready = asyncio.Event()  # its program answers HTTP: requests go through
        self.healthy = False  # and its health path answers below 400 (as a Kubernetes probe counts it)
        self.problem = "starting"  # why it is not ready or healthy yet
        self._probing: asyncio.Task | None = None

    def program(self, python: str) -> dict[str, Any]:
        """What the bridge runs: the script, or (default_command) the module's DEEPaaS API on the port."""
        if self.expose.default_command:
            command = [python, *DEEPAAS, "--listen-port", str(self.expose.port)]
            if self.expose.rewrite_target:
                command += ["--base-path", self.prefix]
            return {"command": command}
        return {"script": self.definition.script}

    async def launch(self, python: str, env: dict[str, str], home: Path, max_body: int) -> None:
        """Start it (the box and cgroup prepared by the pool); readiness is probed in the background."""
        assert self.box is not None
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder = home / f"exposed-{self.id}"  # its own: a replacement never shares its socket's path
        self.folder.mkdir(mode=0o700)
        self.socket = socket_path(self.folder, f"exposed-{self.id}")
        port = self.expose.port
        bridge = self.box.command(
            [python, "-m", "reeflab.oscar_engine.bridge"], own_network=True, low_ports=port < 1024
        )
        enter = self.cgroup.enter if self.cgroup else None
        with _listen(self.socket) as listener, open(home / "worker.log", "ab") as output:
            output.write(f"[{stamp()}] ReefLab: starting exposed service {self.spec.service} on port {port}\n".encode())
            output.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *bridge,
                stdin=asyncio.subprocess.PIPE,
                stdout=output,
                stderr=output,
                env=env,
                cwd=home,
                start_new_session=True,
                preexec_fn=self.box.preexec(enter),
                pass_fds=(listener.fileno(),),
            )
            message = {"fd": listener.fileno(), "port": port, "cwd": self.box.home, **self.program(python)}
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        self.client = SimpleAsyncHTTPClient(
            force_instance=True,
            resolver=UnixResolver(str(self.socket)),
            max_clients=32,
            max_body_size=max_body,
            max_buffer_size=max_body,
        )
        self._probing = asyncio.ensure_future(self._probe())

    def url(self, path: str) -> str:
        return f"http://localhost{path}"  # the resolver connects to the socket whatever the host

    async def _probe(self) -> None:
        """Requests go through once its program answers HTTP at all; healthy once the health path answers below
        400 (as a Kubernetes probe counts it), else the deployment status says what it answered."""
        path = upstream_path(self.expose, self.prefix, self.expose.health_path)
        while self.alive:
            try:
                answer = await self.client.fetch(self.url(path), request_timeout=5, raise_error=False)
            except (OSError, HTTPClientError) as error:
                answer, self.problem = None, f"nothing answers on port {self.expose.port} yet ({type(error).__name__})"
            if answer is not None and answer.code == 599:
                self.problem = f"nothing answers on port {self.expose.port} yet"
            elif answer is not None:
                self.ready.set()
                if answer.code < 400:
                    self.healthy, self.problem = True, ""
                    return
                self.problem = (
                    f"its health path {self.expose.health_path} answers {answer.code}: "
                    "set expose.health_path to a path that answers when it is up"
                )
            await asyncio.sleep(PROBE_SECONDS)

    def exit_reason(self) -> str:
        code = self.proc.returncode if self.proc else None
        if code is not None and code > 128:  # bwrap and the bridge: 128 + the signal
            code = 128 - code
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        return self.oom_reason() or f"its process {how}: see the deployment logs"

    def release(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
        if self.client is not None:
            self.client.close()
        for path in (self.socket, self.folder):
            with contextlib.suppress(OSError, TypeError):
                path.rmdir() if path.is_dir() else path.unlink()
        super().release()


class ExposedServices:
    """The engine's exposed services: started, watched, stopped; `ready(name)` for the proxy."""

    def __init__(self, engine: OscarEngine, base_url: str = "/", max_body: int = 200 * 2**20):
        self.engine, self.base_url, self.max_body = engine, base_url, max_body
        self.instances: dict[str, ExposedInstance] = {}
        self.failures: dict[str, tuple[float, str]] = {}  # service: (time.monotonic(), why it stopped)
        self.used: dict[str, float] = {}  # service: last request (time.monotonic())
        self._starting: dict[str, asyncio.Task] = {}

    @property
    def pool(self):
        return self.engine.pool

    def prefix(self, name: str) -> str:
        return exposed_prefix(self.base_url, name)

    def _exposed(self) -> dict[str, tuple[ServiceDefinition, WorkerSpec]]:
        found = {}
        for record in self.engine.store.list_services():
            definition = self.engine.definition(record.name)
            spec = self.engine.spec(record.name) if definition and definition.expose else None
            if spec is not None:
                found[record.name] = (definition, spec)
        return found

    # -- lifecycle ---------------------------------------------------------------------------

    def maintain(self) -> None:
        """Periodic: stop what is deleted, changed, stopped or idle, note crashes, start what should run."""
        exposed, now = self._exposed(), time.monotonic()
        for name, instance in list(self.instances.items()):
            current = exposed.get(name)
            if current is None or current[1].version != instance.spec.version or name in self.pool.stopped:
                self.stop(name)
            elif not instance.alive:
                self._failed(name, instance.exit_reason())
                self.stop(name)
            elif instance.expose.min_scale == 0 and now - self.used.get(name, now) > current[1].idle_seconds:
                log.info("stopping exposed service %s: idle", name)
                self.stop(name)
        for name, (definition, _) in exposed.items():
            if definition.expose.min_scale >= 1 and name not in self.pool.stopped:
                self._start_soon(name)

    def _start_soon(self, name: str) -> asyncio.Task | None:
        """A start task for the service unless it runs, is starting, or failed too recently."""
        if name in self.instances:
            return None
        if name in self._starting:
            return self._starting[name]
        failed = self.failures.get(name)
        if failed and time.monotonic() - failed[0] < RETRY_SECONDS:
            return None
        task = asyncio.ensure_future(self._start(name))
        self._starting[name] = task
        task.add_done_callback(lambda _: self._starting.pop(name, None))
        return task

    async def _start(self, name: str) -> None:
        found = self._exposed().get(name)
        if found is None:
            return
        definition, spec = found
        instance = ExposedInstance(spec, definition, self.prefix(name))
        try:
            if not self.pool.sandbox.sandboxed:
                raise ReefLabError(
                    "exposed services run only in bubblewrap, in a network namespace of their own (no other local "
                    "user may reach their port): install bubblewrap on the engine's machine"
                )
            env = await self.pool.prepare(instance)
            record = self.engine.store.get_service(name)
            env.update(  # as OSCAR gives its exposed services
                OSCAR_SERVICE_NAME=name,
                OSCAR_SERVICE_TOKEN=record.token if record else "",
                OSCAR_SERVICE_BASE_PATH=instance.prefix,
            )
            if definition.expose.default_command:
                env["DEEPAAS_V2_MODEL"] = definition.module
            await instance.launch(self.pool.python, env, self.pool.home / name, self.max_body)
        except asyncio.CancelledError:  # stopped (or deleted) while starting
            self.pool.discard(instance)
            raise
        except Exception as error:
            message = getattr(error, "message", None) or str(error)
            log.warning("exposed service %s could not start: %s", name, message)
            self._failed(name, f"it could not start: {message}")
            self.pool.discard(instance)
            return
        self.instances[name] = instance
        self.used[name] = time.monotonic()
        log.info("started exposed service %s (process %s, port %s)", name, instance.pid, instance.expose.port)

    def _failed(self, name: str, reason: str) -> None:
        self.failures[name] = (time.monotonic(), reason)
        with contextlib.suppress(OSError), open(self.pool.home / name / "worker.log", "a") as output:
            output.write(f"[{stamp()}] ReefLab: exposed service {name} stopped: {reason}\n")

    def stop(self, name: str) -> None:
        """Kill its process now (sandbox, program and all); its cgroup, folder and socket go once it is dead."""
        task = self._starting.pop(name, None)
        if task is not None:
            task.cancel()
        instance = self.instances.pop(name, None)
        if instance is not None:
            log.info("stopping exposed service %s (process %s)", name, instance.pid)
            self.pool.discard(instance)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.failures.pop(name, None)
        self._start_soon(name)

    def forget(self, name: str) -> None:
        """The service is gone (deleted, or its owner revoked)."""
        self.stop(name)
        self.failures.pop(name, None)
        self.used.pop(name, None)

    def close(self) -> None:
        for name in list(self.instances) + list(self._starting):
            self.stop(name)

    # -- requests ----------------------------------------------------------------------------

    async def ready(self, name: str, timeout: float) -> ExposedInstance:
        """The running instance, started if it is not (min_scale 0, or after a crash); 503 saying why if it
        is stopped or does not get ready within `timeout` seconds."""
        if name in self.pool.stopped:
            raise NotReady(f"exposed service '{name}' is stopped: POST /system/services/{name}/start starts it")
        self.used[name] = time.monotonic()
        task = self._start_soon(name)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):  # stopped meanwhile: said below
                await asyncio.shield(task)
        instance = self.instances.get(name)
        if instance is None:
            failed = self.failures.get(name)
            why = failed[1] if failed else "it is not running"
            raise NotReady(f"exposed service '{name}' is not available: {why}")
        if not instance.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(instance.ready.wait()), timeout)
        if not instance.ready.is_set():
            raise NotReady(f"exposed service '{name}' is not ready: {instance.problem}")
        return instance

    # -- what /system/services/<name>/deployment shows -----------------------------------------

    def status(self, name: str, expose: Expose) -> dict[str, Any]:
        """types.ServiceDeploymentStatus of its one process."""
        instance = self.instances.get(name)
        failed = self.failures.get(name)
        alive = instance is not None and instance.alive
        if name in self.pool.stopped:
            state, reason = "stopped", "Stopped: POST .../start starts it again."
        elif alive and instance.healthy:
            state, reason = "ready", f"Its process answers on port {expose.port} (pid {instance.pid})."
        elif alive and instance.ready.is_set():
            state, reason = "degraded", f"Requests go through, but {instance.problem}."
        elif alive:
            state, reason = "pending", f"Starting: {instance.problem}."
        elif failed:
            state, reason = "failed", f"It stopped: {failed[1]}; tried again every {RETRY_SECONDS} s."
        elif expose.min_scale == 0:
            state, reason = "ready", "Not running: the first request starts it (min_scale 0)."
        else:
            state, reason = "pending", "Starting."
        if expose.min_scale > 1:
            reason += f" One process runs here (min_scale {expose.min_scale} on OSCAR)."
        return {
            "state": state,
            "reason": reason,
            "active_instances": int(alive),
            "affected_instances": int(state in ("failed", "pending", "degraded") and expose.min_scale >= 1),
            "resource_kind": RESOURCE_KIND,
        }
