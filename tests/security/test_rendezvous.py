"""Red team, distributed jobs on one machine: another account tries to join a running job's torchrun rendezvous.

The rendezvous store is a TCP port without authentication (PyTorch has none): on a shared loopback any account of
the machine could connect to it and write keys the ranks read. Each distributed job's ranks therefore run in a
network namespace of their own (reeflab.jobs.netns), with only the platform's services its environment names
forwarded in. This test tries the crossing as another OS account (`nobody`, through setpriv) and asserts it fails;
the second one checks that the ranks still reach those services (the user's Jupyter server, through the Python
client), which is what the forwarding is for.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from reeflab import accounts
from reeflab.jobs.netns import forwarded_ports
from reeflab.storage.platform_s3 import user_bucket
from test_distributed_jobs import jp_server_config, no_leftover_jobs  # noqa: F401 (the jobs' server, reused)
from test_jobs import call, ended, notebook, wait_for

pytestmark = pytest.mark.skipif(not accounts.isolation_available(), reason="acting as another account needs root")

HOLD = """\
import json, os, time
if os.environ["RANK"] == "0":
    json.dump({"addr": os.environ["MASTER_ADDR"], "port": int(os.environ["MASTER_PORT"])}, open("rendezvous.json", "w"))
time.sleep(90)
"""
JOIN = """\
import sys
from datetime import timedelta
from torch.distributed import TCPStore
store = TCPStore(sys.argv[1], int(sys.argv[2]), is_master=False, timeout=timedelta(seconds=10))
store.set("intruder", "was here")
print("joined: the store has", store.num_keys(), "keys", flush=True)
"""


@pytest.mark.usefixtures("no_leftover_jobs")
async def test_another_account_cannot_join_a_running_jobs_rendezvous(jp_fetch, jp_root_dir):
    (jp_root_dir / "ddp").mkdir()
    name = notebook(jp_root_dir / "ddp" / "hold.ipynb", HOLD)
    job = await call(jp_fetch, "POST", body={"notebook": f"ddp/{name}", "processes": 2})
    found = jp_root_dir / "ddp" / "rendezvous.json"
    try:
        done = await wait_for(jp_fetch, job["id"], lambda j: found.exists() or ended(j), timeout=120)
    except AssertionError as err:
        pytest.fail(f"the job's ranks never started: {err}")
    if not found.exists():
        pytest.fail(f"the job ended before its ranks started: {done}")
    rendezvous = json.loads(found.read_text())
    try:
        intruder = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", JOIN]
            + [rendezvous["addr"], str(rendezvous["port"])],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        await call(jp_fetch, "POST", job["id"], "cancel")
    assert intruder.returncode != 0 and "joined" not in intruder.stdout, intruder.stdout + intruder.stderr[-300:]


REACH = """\
import os
import boto3
from reeflab.client import jobs
mine = [job.id for job in jobs.list_jobs()]
print("rank", os.environ["RANK"], "sees its job:", os.environ["REEFLAB_JOB_ID"] in mine, flush=True)
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.put_object(Bucket=os.environ["BUCKET"], Key=f"ddp/rank-{os.environ['RANK']}.txt", Body=b"written by a rank")
"""


@pytest.mark.usefixtures("no_leftover_jobs")
async def test_the_ranks_still_reach_the_platform(jp_fetch, jp_root_dir, jp_serverapp, server_url, s3, monkeypatch):
    environment = {  # what the job's environment names is forwarded into its network: the user's server and S3
        "REEFLAB_URL": server_url,
        "REEFLAB_TOKEN": jp_serverapp.identity_provider.token,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.ana_key["access_key"],
        "AWS_SECRET_ACCESS_KEY": s3.ana_key["secret_key"],
        "BUCKET": user_bucket("ana"),
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    name = notebook(jp_root_dir / "reach.ipynb", REACH)
    job = await call(jp_fetch, "POST", body={"notebook": name, "processes": 2})
    done = await wait_for(jp_fetch, job["id"], ended, timeout=120)
    log = "\n".join((await call(jp_fetch, "GET", job["id"], "log", params={"tail": "500"}))["lines"])
    assert done["state"] == "completed", (done, log[-2000:])
    said = next(line for line in log.splitlines() if "ranks in a private network" in line)
    forwarded = said.split("forwarded: ")[1].split(", ")
    assert str(jp_serverapp.port) in forwarded and str(s3.port) in forwarded, said
    bucket = s3.client(key=s3.ana_key)
    for rank in (0, 1):
        params = {"tail": "500", "rank": str(rank)}
        ranks = "\n".join((await call(jp_fetch, "GET", job["id"], "log", params=params))["lines"])
        assert f"rank {rank} sees its job: True" in ranks, ranks[-2000:]
        written = bucket.get_object(Bucket=user_bucket("ana"), Key=f"ddp/rank-{rank}.txt")["Body"].read()
        assert written == b"written by a rank"


def test_only_the_hosts_loopback_services_are_forwarded():
    env = {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000/",
        "AWS_ENDPOINT_URL": "http://localhost:8333",
        "WEBDAV_URL": "https://[::1]/dav/",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "REEFLAB_SERVERLESS_URL": "https://oscar.example.org:8443/",  # another host: not on this loopback
        "MASTER_ADDR": "127.0.0.1",  # not a URL
        "BROKEN": "http://127.0.0.1:notaport/",
    }
    assert forwarded_ports(env) == [443, 5000, 8081, 8333]
