"""Each user's own Label Studio database, made by the hub on the operator's PostgreSQL (a real server, Debian's, with
an admin role that has CREATEROLE and CREATEDB and is no superuser): a user's URL opens their database and is refused
on anyone else's; spawning again changes nothing; hostile names stay names; a deleted user's database goes to no
namesake; in kubernetes mode the pod reads the URL from a Secret in the user's namespace (kmock), never its spec; and a
user's real Label Studio keeps its projects in the database made for it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import aiohttp.web
import kmock
import kubernetes_validate
import psycopg2
import pytest
from kubernetes_asyncio import client
from reeflab.annotation.databases import ENV, DatabaseRefused, LabelStudioDatabases, label_studio_pre_spawn_hook
from reeflab.annotation.labelstudio import LabelStudio
from reeflab.hub.revoke import Targets, reconcile, revoke_user
from reeflab.hub.spawners import ReefLabLocalSpawner
from reeflab.testing.postgres import PostgresProcess
from tornado import web
from traitlets.config import PyFileConfigLoader

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "hub_config" / "profiles.yaml"
K8S_VERSION = "1.33.0"
KEY = "k" * 64
GEN1, GEN2 = "20260101T000000.000000Z", "20260301T000000.000000Z"


@pytest.fixture(scope="module")
def postgres():
    """One cluster for the module, and the operator's admin role: CREATEROLE + CREATEDB, not a superuser."""
    with PostgresProcess() as server:
        server.query("postgres", "CREATE ROLE ls_admin LOGIN CREATEROLE CREATEDB PASSWORD 'admin-pw-9f2'")
        server.admin_url = server.url("postgres").replace(f"{server.user}:{server.password}", "ls_admin:admin-pw-9f2")
        yield server


@pytest.fixture(scope="module")
def databases(postgres) -> LabelStudioDatabases:
    return LabelStudioDatabases(postgres.admin_url, KEY)


def connect(url: str, database: str | None = None):
    """A connection as the URL's role, to its database or to `database`."""
    if database is not None:
        url = url.rsplit("/", 1)[0] + "/" + database
    return psycopg2.connect(url, connect_timeout=10)


def scalar(url: str, query: str, *args):
    with contextlib.closing(connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(query, args)
        connection.commit()
        return cursor.fetchone()[0] if cursor.description else None


def test_each_user_gets_a_database_no_one_else_can_open(databases):
    a = databases.ensure("ann-a", GEN1)
    b = databases.ensure("ann-b", GEN1)
    assert a != b and "ann-a" in a and "ann-b" in b
    scalar(a, "CREATE TABLE project (title text); INSERT INTO project VALUES ('reef of a')")
    assert scalar(a, "SELECT title FROM project") == "reef of a"
    assert scalar(a, "SELECT current_database()") == databases.name("ann-a")
    for mine, theirs in ((a, "ann-b"), (b, "ann-a")):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            connect(mine, databases.name(theirs))
    # the role can do nothing beyond its database
    powers = "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
    assert scalar(a, powers) is False
    # a second spawn: the same URL, and a's tables are still there
    assert databases.ensure("ann-a", GEN1) == a
    assert scalar(a, "SELECT count(*) FROM project") == 1


@pytest.mark.parametrize(
    "name",
    ["o'brien\"; DROP ROLE ls_admin; --", "ana.b", "ana-b", "x" * 300 + "-é€", "rl-ann-a"],
)
def test_a_hostile_username_stays_a_name(databases, postgres, name):
    url = databases.ensure(name)
    role = databases.name(name)
    assert len(role) <= 63 and role.startswith("rl-")
    assert scalar(url, "SELECT current_user") == role
    assert postgres.query("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'ls_admin'") == ["1"]
    # ana.b and ana-b are two users, two databases
    assert databases.name("ana.b") != databases.name("ana-b")
    assert databases.ensure(name) == url


def test_a_deleted_users_database_goes_to_no_namesake(databases, postgres):
    old = databases.ensure("ann-c", GEN1)
    scalar(old, "CREATE TABLE secret_labels (x int)")
    new = databases.ensure("ann-c", GEN2)  # a new hub user of the same name
    assert new != old
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(old)
    assert scalar(new, "SELECT count(*) FROM pg_tables WHERE tablename = 'secret_labels'") == 0
    with pytest.raises(DatabaseRefused, match="newer user"):
        databases.ensure("ann-c", GEN1)  # a spawn of the deleted one, late
    # the hub deletes ann-c (revoke.py): database and role go; a revocation of an older one left the newer alone
    targets = Targets(label_studio_admin_database=postgres.admin_url)
    assert revoke_user("ann-c", targets, GEN1)["label_studio"] == "nothing (a newer user holds the name)"
    assert revoke_user("ann-c", targets, GEN2)["label_studio"].endswith("dropped")
    gone = f"SELECT count(*) FROM pg_database WHERE datname = '{databases.name('ann-c')}'"
    assert postgres.query("postgres", gone) == ["0"]
    # deleted while the hub was down: the reconcile at its start drops it
    databases.ensure("ann-d", GEN1)
    outcome = reconcile({"ann-a": GEN1, "ann-b": GEN1}, targets)
    assert "ann-d" in outcome["label_studio"] and "ann-a" not in outcome["label_studio"]
    with pytest.raises(psycopg2.OperationalError):
        connect(databases.url("ann-d", GEN1))


def test_a_role_reeflab_did_not_make_is_left_alone(databases, postgres):
    taken = databases.name("ann-e")
    postgres.query("postgres", f"CREATE ROLE \"{taken}\" LOGIN PASSWORD 'theirs'")
    with pytest.raises(DatabaseRefused, match="did not make"):
        databases.ensure("ann-e")
    assert databases.revoke("ann-e").startswith("nothing")
    assert postgres.query("postgres", f"SELECT count(*) FROM pg_roles WHERE rolname = '{taken}'") == ["1"]


async def test_local_mode_the_server_gets_its_url_and_an_unreachable_server_stops_the_spawn(databases, caplog):
    spawner = ReefLabLocalSpawner(user=SimpleNamespace(name="ann-f", created=None, url="/user/ann-f/"))
    await label_studio_pre_spawn_hook(databases)(spawner)
    url = spawner.environment[ENV]
    assert scalar(url, "SELECT current_database()") == databases.name("ann-f")
    down = LabelStudioDatabases("postgresql://ls_admin:admin-pw-9f2@127.0.0.1:9/postgres", KEY, timeout=3)
    with pytest.raises(web.HTTPError) as refused:
        await label_studio_pre_spawn_hook(down)(ReefLabLocalSpawner(user=SimpleNamespace(name="ann-g", created=None)))
    assert refused.value.status_code == 503 and "Label Studio database could not be made" in refused.value.log_message
    assert "admin-pw-9f2" not in refused.value.log_message and "admin-pw-9f2" not in caplog.text


class Emulator(kmock.KubernetesEmulator):
    """kmock, plus PUT (replace) of a named object, as a real API server answers it."""

    async def _handle(self, request: kmock.Request):
        if request.method == "PUT" and request.name and request.resource is not None:
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self._objects or self._objects[key].deleted:
                    return aiohttp.web.json_response({"kind": "Status", "code": 404}, status=404)
                self._objects[key].delete()
                self._objects[key].create(request.data)
            return aiohttp.web.json_response(request.data)
        return await super()._handle(request)


@pytest.fixture
def cluster(jp_asyncio_loop):
    stack = contextlib.AsyncExitStack()

    async def start():
        emulator = await stack.enter_async_context(Emulator())
        emulator.resources["v1/secrets"] = {}
        await stack.enter_async_context(kmock.Server(emulator))
        api = client.ApiClient(client.Configuration(host=str(emulator.url).rstrip("/")))
        stack.push_async_callback(api.close)
        return emulator, api

    try:
        yield jp_asyncio_loop.run_until_complete(start())
    finally:
        jp_asyncio_loop.run_until_complete(stack.aclose())


async def test_kubernetes_the_pod_reads_its_url_from_a_secret_of_its_own(
    postgres, databases, kubespawner, cluster, monkeypatch, tmp_path
):
    emulator, api = cluster
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("REEFLAB_LABEL_STUDIO_ADMIN_DATABASE", postgres.admin_url)
    spawner = kubespawner(PROFILES, "ann-k")  # as hub/config.py configures kubernetes mode, hook included
    await spawner.run_pre_spawn_hook()
    await spawner.load_user_options()
    pod = spawner.api.api_client.sanitize_for_serialization(await spawner.get_pod_manifest())
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **pod}, K8S_VERSION, strict=True)
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    [entry] = [e for e in notebook["env"] if e["name"] == ENV]
    reference = {"name": spawner.server_secret_name, "key": ENV}
    assert entry == {"name": ENV, "valueFrom": {"secretKeyRef": reference}}
    hub_key = (tmp_path / "hub" / "label-studio-database-key").read_text()
    password = LabelStudioDatabases(postgres.admin_url, hub_key).password("ann-k")
    assert password not in json.dumps(pod)

    spawner.api = client.CoreV1Api(api)
    for _ in range(2):  # first spawn creates the Secret, a respawn replaces it: same URL
        await spawner.apply_server_secret()
    secret = await spawner.api.read_namespaced_secret(spawner.server_secret_name, spawner.namespace)
    secret = api.sanitize_for_serialization(secret)
    assert secret["metadata"]["namespace"] == spawner.namespace == "reeflab-ann-k"  # the user's own
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    url = base64.b64decode(secret["data"][ENV]).decode()
    assert scalar(url, "SELECT current_database()") == databases.name("ann-k")
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        connect(url, databases.name("ann-a"))
    assert [r.method for r in emulator if "secrets" in r.url.path] == ["POST", "POST", "PUT", "GET"]


def test_the_local_hub_takes_the_admin_url_from_its_environment(postgres, monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith("REEFLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("REEFLAB_LABEL_STUDIO_ADMIN_DATABASE", postgres.admin_url)
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(REPO / "hub_config")).load_config()
    assert callable(c.Spawner.pre_spawn_hook)
    assert c.RevokingAuthenticator.label_studio_admin_database == postgres.admin_url  # dropped with its user
    assert oct((tmp_path / "label-studio-database-key").stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("REEFLAB_LABEL_STUDIO_ADMIN_DATABASE", "mysql://root@db/labels")
    with pytest.raises(ValueError, match=r"postgresql://<user>:<password>@<host>:<port>/<database>"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(REPO / "hub_config")).load_config()


def test_a_users_label_studio_runs_on_the_database_the_hub_made(databases, postgres, tmp_path):
    """Label Studio's migrations need no more than owning the database (the role may not create one)."""
    url = databases.ensure("ann-ls", GEN1)
    studio = LabelStudio(tmp_path / "annotation", tmp_path, database=url)

    async def go():
        try:
            return (await studio.ensure()).call("POST", "/api/projects", json={"title": "Reef, hub-made database"})
        finally:
            await studio.stop()

    project = asyncio.run(go())
    assert scalar(url, "SELECT title FROM project WHERE id = %s", int(project["id"])) == "Reef, hub-made database"
    assert not [p for p in (tmp_path / "annotation").rglob("*") if p.suffix in (".sqlite3", ".sqlite", ".db")]
