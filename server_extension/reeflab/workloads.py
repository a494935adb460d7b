"""Everything one user started, stopped together when the platform stops.

Deployments, notebook jobs, pipeline runs and Flower servers run in sessions of their own, and storage
mounts too, so that they outlive a restart of the user's Jupyter server. When ReefLab itself stops
(`reeflab up` interrupted), they must not outlive it: the hub runs

    python -m reeflab.workloads stop

under each user's OS account, in their home, with their server's environment, once their server has
stopped. It loads the server's Jupyter configuration and the same services the server uses, stops what
they hold and prints one line per thing stopped. Their records say why ("stopped: ReefLab was
stopped"); connections the user mounted stay marked mounted and are mounted again at their next start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Application, Config

REASON = "ReefLab was stopped; start it again from the panel"


def server_config() -> Config:
    """The user's Jupyter server configuration (jupyter_server_config.{py,json} on the config path),
    so the services find their state where the user's server keeps it."""
    app = Application()
    app.load_config_file("jupyter_server_config", path=jupyter_config_path())
    return app.config


async def stop_all(owner: str, workspace: str) -> list[str]:
    """Stop everything `owner` started from the server whose root folder is `workspace`; one line each."""
    from .deployments.service import DeploymentService
    from .jobs.service import JobService
    from .pipelines.service import PipelineService
    from .storage.service import StorageService
    from .training.federated import FederatedService

    config = server_config()
    storage = StorageService(config=config, workspace=workspace)
    deployments = DeploymentService(config=config, storage=storage)
    jobs = JobService(config=config, notebook_root=workspace, storage=storage)
    pipelines = PipelineService(config=config, notebook_root=workspace)
    federated = FederatedService(config=config)
    loop = asyncio.get_running_loop()
    stopped, cancelled, runs, servers = await asyncio.gather(
        deployments.stop_all(REASON),
        jobs.stop_all(REASON),
        pipelines.stop_all(REASON),
        loop.run_in_executor(None, federated.stop_all, REASON),
    )
    # mounts last: a deployment or job may have been writing into one
    unmounted = await loop.run_in_executor(None, storage.unmount_all, owner)
    return [
        *(f"stopped deployment '{d.title}' ({d.id})" for d in stopped),
        *(f"cancelled notebook job '{j.title}' ({j.id})" for j in cancelled),
        *(f"cancelled pipeline run '{r.title}' ({r.id})" for r in runs),
        *(f"stopped Flower server '{s.title}' ({s.id})" for s in servers),
        *(
            f"unmounted storage '{c.name}' ({storage.mount_folder}/{c.name}"
            + ("; mounted again at the next start)" if c.mounted else ")")
            for c in unmounted
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reeflab.workloads")
    parser.add_argument("action", choices=["stop"], help="stop everything this user started")
    parser.add_argument("--owner", default=os.environ.get("JUPYTERHUB_USER", ""), help="hub user name")
    parser.add_argument("--workspace", default=os.getcwd(), help="root folder of the user's server")
    args = parser.parse_args(argv)
    if not args.owner:
        parser.error("--owner is required (or JUPYTERHUB_USER)")
    for line in asyncio.run(stop_all(args.owner, args.workspace)):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
