"""OSCAR v4's user routes on the local engine, as the OSCAR dashboard and oscar-python call them.

One real engine with a real SeaweedFS for the module; alice and bob log in with their own tokens
(plain HTTP) or the basic-auth login the engine gives them (oscar-python). Each route is tried for
its owner and refused for the other user.
"""

from __future__ import annotations

import pytest
import requests
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.testing.process import wait_until

DASHBOARD = "https://dashboard.example.org"
SCRIPT = """\
#!/bin/sh
echo "worker says hello"
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/upper.txt"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    state = tmp_path_factory.mktemp("oscar-api") / "state"
    args = ["--ServerlessApp.max_workers=4", f"--ServerlessApp.cors_origins={DASHBOARD}/"]
    with EngineProcess(state, users=["alice", "bob"], args=args, s3=True) as engine:
        yield engine


def service(name: str, **extra) -> dict:
    return {"name": name, "image": "ghcr.io/example/alpine", "cpu": "0.5", "memory": "256Mi", "script": SCRIPT, **extra}


@pytest.fixture(scope="module")
def shared(engine):
    """alice's public service (bob may use it) and private one, kept for the module."""
    alice = engine.client("alice")
    alice.create_service(service("pub", visibility="public"))
    alice.create_service(service("priv"))
    yield
    alice.remove_service("pub")
    alice.remove_service("priv")


def test_service_info_and_status_have_the_fields_the_dashboard_reads(engine, shared):
    alice = engine.client("alice")
    listed = {s["name"]: s for s in alice.list_services().json()}
    for shown in (listed["pub"], alice.get_service("pub").json()):
        assert shown["labels"] == {} and shown["annotations"] == {}
        assert shown["expose"]["max_scale"] == 10 and shown["expose"]["api_port"] == []
        assert shown["enable_gpu"] is False and shown["owner"] == "alice"
    with_deployment = engine.request("GET", "/system/services/pub?include=deployment", "alice").json()
    assert with_deployment["deployment"]["state"] in ("ready", "pending")

    info = alice.get_cluster_info().json()
    assert info["version"].split(".")[0] == "4" and info["oscar_api"] == "v4.0.0"
    assert info["reeflab_version"] == info["serverless_backend"]["version"]

    status = alice.get_cluster_status().json()
    assert status["oscar"]["deployment"]["ready_replicas"] == 1
    assert status["oscar"]["deployment"]["creation_timestamp"].endswith("Z")
    assert status["oscar"]["oidc"] == {"enabled": False, "issuers": [], "groups": []}
    assert status["cluster"]["nodes"][0]["name"] == "reeflab-local"  # not an admin: the host is not named


def test_buckets_with_presigned_upload_and_download(engine, shared):
    alice, bob = engine.client("alice"), engine.client("bob")
    assert "alice" in [b["bucket_name"] for b in alice.list_buckets().json()]
    assert alice.create_bucket("alice--photos").status_code == 201
    listed = {b["bucket_name"]: b for b in alice.list_buckets().json()}
    assert listed["alice--photos"] == {
        "bucket_name": "alice--photos",
        "visibility": "private",
        "allowed_users": [],
        "owner": "alice",
        "metadata": {"owner": "alice"},
    }
    assert "alice--photos" not in [b["bucket_name"] for b in bob.list_buckets().json()]

    refused = [
        ("POST", "/system/buckets", {"bucket_name": "alice--mine"}, 400),  # not a name bob may make
        ("POST", "/system/buckets", {"bucket_name": "bob--shared", "visibility": "public"}, 400),
        ("GET", "/system/buckets/alice--photos", None, 404),
        ("DELETE", "/system/buckets/alice--photos", None, 404),
        ("POST", "/system/buckets/alice--photos/presign", {"object_key": "a", "operation": "download"}, 404),
        ("PUT", "/system/buckets", {"bucket_name": "alice--photos", "visibility": "private"}, 404),
    ]
    for method, path, body, status in refused:
        answer = engine.request(method, path, "bob", json=body)
        assert answer.status_code == status, (method, path, answer.text)

    upload = alice.presign_bucket("alice--photos", "in/note.txt", operation="upload", content_type="text/plain").json()
    assert upload["method"] == "PUT" and upload["headers"] == {"Content-Type": "text/plain"}
    put = requests.put(upload["url"], data=b"grouper at 8 m", headers=upload["headers"], timeout=30)
    assert put.status_code == 200, put.text
    download = alice.presign_bucket("alice--photos", "in/note.txt").json()
    assert download["method"] == "GET" and download["object_key"] == "in/note.txt"
    assert requests.get(download["url"], timeout=30).content == b"grouper at 8 m"
    tampered = download["url"].replace("note.txt", "other.txt")
    assert requests.get(tampered, timeout=30).status_code == 403

    contents = alice.get_bucket("alice--photos").json()
    assert [(o["object_name"], o["size_bytes"]) for o in contents["objects"]] == [("in/note.txt", 14)]
    assert contents["owner"] == "alice" and contents["is_truncated"] is False and contents["returned_items"] == 1

    bad = engine.request("POST", "/system/buckets/alice--photos/presign", "alice", json={"object_key": "x"})
    assert bad.status_code == 400 and "operation" in bad.text
    long = {"object_key": "x", "operation": "upload", "expires_in": 7200}
    assert engine.request("POST", "/system/buckets/alice--photos/presign", "alice", json=long).status_code == 400
    assert engine.request("DELETE", "/system/buckets/alice", "alice").status_code == 400  # her own bucket stays
    assert alice.delete_bucket("alice--photos").status_code == 204
    assert "alice--photos" not in [b["bucket_name"] for b in alice.list_buckets().json()]
    assert engine.request("GET", "/system/buckets/alice--photos", "alice").status_code == 404


def test_logs_of_the_callers_jobs_and_their_deletion(engine, shared):
    alice, bob = engine.client("alice"), engine.client("bob")
    job = engine.request("POST", "/job/pub", "alice", data=b"aGk=").json()["jobName"]
    bobs = engine.request("POST", "/job/pub", "bob", data=b"aGk=").json()["jobName"]
    wait_until(
        lambda: all(j["status"] == "Succeeded" for j in alice.list_jobs("pub").json()["jobs"].values()),
        120,
        "the jobs to finish",
    )
    mine = {entry["job"]: entry for entry in engine.request("GET", "/system/logs", "alice").json()["logs"]}
    assert {job, bobs} <= set(mine) and mine[job]["service"] == "pub" and mine[job]["status"] == "Succeeded"
    assert mine[bobs]["user"] == "bob"
    theirs = [entry["job"] for entry in bob.get_system_logs().json()["logs"]]
    assert bobs in theirs and job not in theirs

    assert engine.request("DELETE", f"/system/logs/pub/{job}", "bob").status_code == 404
    assert engine.request("DELETE", "/system/logs/priv", "bob").status_code == 404
    assert engine.request("DELETE", f"/system/logs/pub/{job}", "alice").status_code == 204
    assert engine.request("DELETE", "/system/logs/pub?all=true", "alice").status_code == 204
    assert alice.list_jobs("pub").json()["jobs"] == {}


def test_deployment_state_logs_and_lifecycle(engine, shared):
    alice = engine.client("alice")
    alice.create_service(service("warm", synchronous={"min_scale": 1}))
    try:

        def state(expected: str, active: int):
            status = alice.get_deployment_status("warm").json()
            return status if (status["state"], status["active_instances"]) == (expected, active) else None

        ready = wait_until(lambda: state("ready", 1), 60, "a warm worker")
        assert ready["service_name"] == "warm" and ready["resource_kind"] == "reeflab_workers"
        assert engine.request("POST", "/run/warm", "alice", data=b"aGk=").ok
        logs = alice.get_deployment_logs("warm").json()
        assert logs["service_name"] == "warm" and isinstance(logs["entries"], list)

        for path in ["/deployment", "/deployment/logs", "/stop", "/start", "/restart"]:
            method = "GET" if path.startswith("/deployment") else "POST"
            assert engine.request(method, "/system/services/warm" + path, "bob").status_code == 404, path
        assert engine.request("GET", "/system/services/pub/deployment", "bob").status_code == 200
        for method, path in [("GET", "/deployment/logs"), ("POST", "/stop"), ("POST", "/restart")]:
            assert engine.request(method, "/system/services/pub" + path, "bob").status_code == 403, path

        stopped = engine.request("POST", "/system/services/warm/stop", "alice").json()
        assert stopped["state"] == "stopped"
        wait_until(lambda: state("stopped", 0), 30, "the warm worker to stop")
        assert engine.request("POST", "/system/services/warm/start", "alice").status_code == 200
        wait_until(lambda: state("ready", 1), 60, "min_scale to be warm again")
        assert engine.request("POST", "/system/services/warm/restart", "alice").json()["service_name"] == "warm"
        wait_until(lambda: state("ready", 1), 60, "a fresh warm worker")
    finally:
        alice.remove_service("warm")


def test_metrics_and_quotas_are_the_callers_own(engine, shared):
    alice, bob = engine.client("alice"), engine.client("bob")
    job = engine.request("POST", "/job/priv", "alice", data=b"aGk=").json()["jobName"]
    wait_until(lambda: alice.list_jobs("priv").json()["jobs"][job]["status"] == "Succeeded", 120, "the job")

    summary = alice.get_metrics_summary().json()
    assert summary["totals"]["services_count_total"] >= 2 and summary["totals"]["requests_count_async"] >= 1
    assert summary["start"] < summary["end"] and summary["sources"][0]["name"] == "reeflab-engine"
    assert bob.get_metrics_summary().json()["totals"]["services_count_total"] == 0

    metrics = {m["metric"]: m["value"] for m in alice.get_service_metrics("priv").json()["metrics"]}
    assert metrics["requests-async-per-service"] >= 1 and metrics["cpu-hours"] >= 0
    one = engine.request("GET", "/system/metrics/priv?metric=cpu-hours", "alice").json()["metrics"]
    assert [m["metric"] for m in one] == ["cpu-hours"]
    assert engine.request("GET", "/system/metrics/priv?metric=nope", "alice").status_code == 400
    assert engine.request("GET", "/system/metrics?start=yesterday", "alice").status_code == 400
    assert engine.request("GET", "/system/metrics/priv", "bob").status_code == 404
    assert engine.request("GET", "/system/metrics/pub", "bob").status_code == 403
    breakdown = alice.get_metrics_breakdown("service").json()
    assert "priv" in [item["key"] for item in breakdown["items"]] and breakdown["group_by"] == "service"

    quota = alice.get_own_quota().json()
    assert quota["user_id"] == "alice" and quota["resources"]["cpu"]["max"] > 0
    assert quota["resources"]["memory"]["max"] > 0 and quota["resources"]["cpu"]["used"] >= 0
    assert engine.request("GET", "/system/quotas/user/alice", "bob").status_code == 403
    assert engine.request("GET", "/system/quotas/user/alice", "alice").json()["user_id"] == "alice"


def test_routes_not_offered_answer_501_after_login(engine, shared):
    for path in ["/system/volumes", "/system/volumes/v1", "/system/federation"]:
        assert engine.request("GET", path).status_code == 401, path
        answer = engine.request("GET", path, "alice")
        assert answer.status_code == 501 and "not offered" in answer.text, path
    # exposed services are offered (test_serverless_exposed.py): a service without `expose` has none
    answer = engine.request("GET", "/system/services/pub/exposed/api/x", "alice")
    assert answer.status_code == 404 and "no exposed service named 'pub'" in answer.text
    token = engine.client("alice").get_service("pub").json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert engine.request("GET", "/system/services/pub/auth", headers=auth).status_code == 200
    assert engine.request("GET", "/system/services/priv/auth", "bob").status_code == 404
    assert engine.request("GET", "/system/services/pub/auth", "bob").status_code == 200


def test_cors_for_the_configured_dashboard_only(engine, shared):
    ask = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = engine.request("OPTIONS", "/system/services", headers={"Origin": DASHBOARD, **ask})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "DELETE" in allowed.headers["Access-Control-Allow-Methods"]
    preflight_run = engine.request("OPTIONS", "/run/pub", headers={"Origin": DASHBOARD, **ask})
    assert preflight_run.status_code == 204

    other = engine.request("OPTIONS", "/system/services", headers={"Origin": "https://evil.example.com", **ask})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers

    answer = engine.request("GET", "/system/services", "alice", headers={"Origin": DASHBOARD})
    assert answer.ok and answer.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in answer.headers["Vary"]
    denied = engine.request("GET", "/system/services", headers={"Origin": DASHBOARD})
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == DASHBOARD
    foreign = engine.request("GET", "/system/services", "alice", headers={"Origin": "https://evil.example.com"})
    assert foreign.ok and "Access-Control-Allow-Origin" not in foreign.headers


def test_the_engines_own_address_says_what_it_is_without_a_login(engine):
    # the hub checks this address at start and its Services menu links it: a short guide, no 404, no data
    answer = requests.get(engine.url, timeout=10)
    assert answer.status_code == 200 and "OSCAR REST API" in answer.text and "/system/info" in answer.text
    assert requests.get(engine.url.rstrip("/") + "/system/services", timeout=10).status_code == 401
