"""JupyterHub as `reeflab up` runs it: its stop (Ctrl-C, SIGTERM) ends everything, in seconds, and says what.

JupyterHub's own stop took 43 s and left things running. It stops the managed services one after
another (SIGINT, then 10 s before SIGTERM: MLflow's CLI waits that long for its job consumers), then the
user servers (SIGINT, then 30 s: a server sharing the hub's terminal answers SIGINT with a 5 s
"Shutdown? (y/n)" prompt and resumes), and nothing users started from their servers: deployments,
jobs, pipeline runs, Flower servers and mounts run in sessions of their own so that they outlive a
restart of a server, and so they outlived the platform too.

Here, with one line printed per thing stopped:
- the services no user workload needs (engine, MLflow, idle culler) stop at once, while
- users' servers stop (SIGTERM, hub/spawners.py), then what each user started (`stop_workloads`: their
  own services, under their account), then the S3 server, which their mounts write back to;
- then the proxy, and whatever of the users is still running or mounted (hub/leftovers.py).
A service gets SIGTERM to its whole process group, and SIGKILL after `service_stop_grace` seconds.
With `JupyterHub.cleanup_servers = False` (servers meant to outlive the hub) users' things stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from pathlib import Path

from jupyterhub import orm
from jupyterhub.app import JupyterHub
from traitlets import Float, Unicode

from . import leftovers

SERVICE_TITLES = {
    "reeflab-s3": "the S3 server (SeaweedFS)",
    "reeflab-serverless": "the serverless engine",
    "reeflab-mlflow": "MLflow",
    "idle-culler": "the idle culler",
}
STORAGE_SERVICE = "reeflab-s3"  # stopped after users' mounts have written back to it


def say(line: str) -> None:
    print(line, flush=True)


class ReefLabHub(JupyterHub):
    """JupyterHub that stops the whole platform when it stops (module docstring)."""

    service_stop_grace = Float(5, config=True, help="Seconds a managed service gets after SIGTERM, then SIGKILL")
    workload_stop_timeout = Float(60, config=True, help="Seconds each user's workloads get to stop")
    homes_dir = Unicode(
        config=True, help="Folder of the users' homes: nothing in it may run or be mounted after a stop"
    )

    _stopping: asyncio.Future | None = None

    async def cleanup(self):
        # once: a second Ctrl-C, and the atexit hook after a signal, wait for (or find) the same stop
        stopping = self._stopping
        if stopping is None or (not stopping.done() and stopping.get_loop() is not asyncio.get_running_loop()):
            self._stopping = asyncio.ensure_future(self._stop_platform())
        await asyncio.shield(self._stopping)

    async def _stop_platform(self) -> None:
        started = time.monotonic()
        say("\nStopping ReefLab ...")
        services = {s.name: s for s in self._service_map.values() if s.managed and s.spawner}
        storage = services.pop(STORAGE_SERVICE, None)
        users = self.cleanup_servers

        async def users_then_storage() -> None:
            if users:
                await self._stop_servers()
                await self._stop_workloads()
            if storage is not None:
                await self._stop_service(storage)

        await asyncio.gather(users_then_storage(), *(self._stop_service(s) for s in services.values()))
        await super().cleanup()  # the proxy; what is left of JupyterHub's own cleanup finds nothing running
        if self.cleanup_proxy and self.proxy.should_start:
            say("  stopped the proxy")
        if users and self.homes_dir:
            for line in await asyncio.to_thread(leftovers.sweep, Path(self.homes_dir)):
                say(f"  {line}")
        say(f"ReefLab stopped in {time.monotonic() - started:.1f} s.")
        gc.freeze()  # what is left is the exit: no last garbage collections over the whole heap

    async def _stop_servers(self) -> None:
        async def stop(user, name: str) -> None:
            try:
                await user.stop(name)
                say(f"  stopped the server of {user.name}" + (f" ({name})" if name else ""))
            except Exception as error:
                say(f"  could not stop the server of {user.name}: {error}")

        running = [(u, n) for u in self.users.values() for n, s in list(u.spawners.items()) if s.active]
        await asyncio.gather(*(stop(user, name) for user, name in running))

    async def _stop_workloads(self) -> None:
        """Each user's own stop (at most 4 at once: each is a Python process), lines as they finish."""
        limit = asyncio.Semaphore(4)

        async def stop(user) -> None:
            spawner = user.spawners[next(iter(user.orm_spawners), "")]
            if not hasattr(spawner, "stop_workloads"):  # not a local spawner: nothing of theirs runs here
                return
            async with limit:
                try:
                    lines = await spawner.stop_workloads(self.workload_stop_timeout)
                except Exception as error:
                    lines = [f"could not stop what they started: {error}"]
            for line in lines:
                say(f"  {user.name}: {line}")

        users = [self.users[u] for u in self.db.query(orm.User) if u.orm_spawners]
        await asyncio.gather(*(stop(user) for user in users))

    async def _stop_service(self, service) -> None:
        """SIGTERM to the service's process group, SIGKILL to what is left of it after the grace period."""
        spawner = service.spawner
        spawner.stop_polling()  # an exit we cause is no crash to report
        process = getattr(spawner, "proc", None)
        title = SERVICE_TITLES.get(service.name, f"service {service.name}")
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # services run in sessions of their own
        deadline = time.monotonic() + self.service_stop_grace
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # its children too (MLflow's job consumers)
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            await asyncio.to_thread(process.wait, 5)
        say(f"  stopped {title}")


main = ReefLabHub.launch_instance

if __name__ == "__main__":
    main()
