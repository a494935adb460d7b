"""`make up`'s hub runs MLflow: a user's server is given its account, and the Python client sees the user's runs."""

from __future__ import annotations

import requests
from reeflab.client import Connection, ReefLabClientError, training
from reeflab.testing.hub import HubProcess
from reeflab.testing.process import wait_until
from reeflab.training.accounts import TrackingAccounts


def test_hub_gives_each_server_its_mlflow_account(tmp_path):
    with HubProcess(tmp_path / "hub") as hub:
        assert hub.api("POST", "users/alice").status_code == 201
        server = hub.spawn("alice")
        connection = Connection(server, hub.user_token("alice"))
        port = hub.env["REEFLAB_MLFLOW_PORT"]
        info = training.info(connection)
        assert info["account"] == "alice" and info["tracking_uri"] == f"http://127.0.0.1:{port}"

        def made():  # MLflow may still be starting with the hub: the account follows once it is up
            try:
                return training.experiment("demo", connection)
            except ReefLabClientError as err:
                assert err.status == 503, err.message
                return None

        experiment = wait_until(made, 180, "alice's experiment", interval=1)
        assert experiment["name"] == "alice/demo"

        # a run logged with the account the hub gave alice (as her notebooks do)
        env = TrackingAccounts(info["tracking_uri"], hub.state / "mlflow").environment("alice", create=False)
        auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        api = f"{info['tracking_uri']}/api/2.0/mlflow"
        run = requests.post(f"{api}/runs/create", json={"experiment_id": experiment["id"]}, auth=auth, timeout=30)
        run_id = run.json()["run"]["info"]["run_id"]
        metric = {"run_id": run_id, "key": "mAP50", "value": 0.5, "timestamp": 0, "step": 0}
        assert requests.post(f"{api}/runs/log-metric", json=metric, auth=auth, timeout=30).ok

        runs = training.runs("demo", connection=connection)
        assert [(r["id"], r["metrics"]) for r in runs] == [(run_id, {"mAP50": 0.5})]
        page = connection.session.get(training.run_url(runs[0], connection).split("#")[0], timeout=30)
        assert page.ok and "<title>MLflow</title>" in page.text
        # MLflow is not on the public proxy, and refuses requests without an account
        assert requests.get(hub.url + "services/reeflab-mlflow/", timeout=10).status_code == 404
        assert requests.get(f"{api}/experiments/search", timeout=10).status_code == 401
