"""Tracking and the model registry in kubernetes mode, as manifests built by pure functions (checked offline).

MLflow (`tracking_manifests`): the same entry point as in local mode (`python -m reeflab.training.tracking_server`,
MLflow's basic-auth app plus ReefLab's namespace rule) as a Deployment + ClusterIP Service in the hub's namespace,
- runs, experiments and accounts in the operator's PostgreSQL (a DSN in the Secret: a database the operator
  already backs up, rather than a StatefulSet of ours to look after);
- artifacts in the platform's S3, bucket `reeflab-mlflow` (the `reeflab` prefix is reserved: no user bucket
  can take it), served through MLflow (`--serve-artifacts`): users never hold its S3 key;
- its secrets (admin password, per-user key, Flask key) from the same Secret the hub reads
  (REEFLAB_MLFLOW_ADMIN_PASSWORD, REEFLAB_MLFLOW_USER_KEY), so the hub's pre-spawn hook derives the same
  per-user passwords and gives user servers MLFLOW_TRACKING_URI/_USERNAME/_PASSWORD as in local mode.
hub_config/kubernetes/mlflow.yaml is `tracking_manifests()` with its defaults (tests check it is the same).
"""

from __future__ import annotations

from typing import Any

from ..kube import INSTANCE, MANAGED_BY, NAME
from .tracking_server import AUTH_DATABASE_ENV, SECRET_ENV

Manifest = dict[str, Any]

TRACKING_NAME = "reeflab-mlflow"
TRACKING_PORT = 5005
TRACKING_SECRET = "reeflab-mlflow"
ARTIFACTS_BUCKET = "reeflab-mlflow"
IMAGE = "quay.io/reeflab/singleuser:0.1.0"  # reeflab, mlflow[auth], boto3 and psycopg2 (requirements/platform.txt)
STATE = "/var/lib/reeflab-mlflow"  # auth.ini and the secrets as files: an emptyDir, remade at each start

# key of the Secret -> variable of the MLflow container
SECRET_KEYS = {
    "admin-password": SECRET_ENV["admin_password"],
    "user-key": SECRET_ENV["user_key"],
    "flask-secret": SECRET_ENV["flask_secret"],
    "database-uri": "MLFLOW_BACKEND_STORE_URI",  # e.g. postgresql://mlflow:...@postgres.reeflab.svc/mlflow
    "auth-database-uri": AUTH_DATABASE_ENV,  # may be the same database: MLflow's auth tables have their own names
    "s3-access-key": "AWS_ACCESS_KEY_ID",
    "s3-secret-key": "AWS_SECRET_ACCESS_KEY",
}


def _labels() -> dict[str, str]:
    return {NAME: "reeflab-mlflow", INSTANCE: TRACKING_NAME, MANAGED_BY: "reeflab"}


def tracking_url(namespace: str = "reeflab") -> str:
    """Where user servers and the hub reach MLflow inside the cluster."""
    return f"http://{TRACKING_NAME}.{namespace}.svc:{TRACKING_PORT}"


def tracking_manifests(
    namespace: str = "reeflab",
    image: str = IMAGE,
    s3_endpoint: str = "http://reeflab-s3.reeflab.svc:8333",
    bucket: str = ARTIFACTS_BUCKET,
    secret: str = TRACKING_SECRET,
    workers: int = 2,
) -> list[Manifest]:
    """MLflow's Deployment and Service in `namespace`, reading everything secret from the Secret `secret`."""
    meta = {"name": TRACKING_NAME, "namespace": namespace, "labels": _labels()}
    env = [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for key, variable in SECRET_KEYS.items()
    ]
    env += [
        {"name": "MLFLOW_S3_ENDPOINT_URL", "value": s3_endpoint},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "true"},
    ]
    health = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    container = {
        "name": "mlflow",
        "image": image,
        "command": ["python", "-m", "reeflab.training.tracking_server"],
        "args": [
            f"--state-dir={STATE}",
            "--host=0.0.0.0",
            f"--port={TRACKING_PORT}",
            f"--workers={workers}",
            f"--artifacts-destination=s3://{bucket}/",
        ],
        "env": env,
        "ports": [{"name": "http", "containerPort": TRACKING_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "startupProbe": {**health, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**health, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 20, "failureThreshold": 6},
        "volumeMounts": [{"name": "state", "mountPath": STATE}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "containers": [container],
        "volumes": [{"name": "state", "emptyDir": {"sizeLimit": "1Gi"}}],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 100,
            "fsGroup": 100,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {NAME: "reeflab-mlflow", INSTANCE: TRACKING_NAME}},
            "template": {"metadata": {"labels": _labels()}, "spec": pod},
        },
    }
    port = {"name": "http", "port": TRACKING_PORT, "targetPort": "http", "protocol": "TCP"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": dict(meta),
        "spec": {"type": "ClusterIP", "selector": {NAME: "reeflab-mlflow", INSTANCE: TRACKING_NAME}, "ports": [port]},
    }
    return [deployment, service]


TRACKING_HEADER = """\
# MLflow in kubernetes mode: the hub's tracking server as a Deployment + Service in the hub's namespace.
#
# Generated from reeflab.training.kubernetes.tracking_manifests(); tests/test_tracking_kubernetes.py checks this
# file is the same and valid. Before applying it (kubectl apply -f hub_config/kubernetes/mlflow.yaml):
# - a PostgreSQL database for MLflow (the operator's), and the bucket reeflab-mlflow on the platform's S3 with
#   a key that may write it (MLFLOW_S3_ENDPOINT_URL below: that S3's in-cluster URL, e.g. OSCAR's MinIO);
# - the Secret it reads, e.g.
#     kubectl -n reeflab create secret generic reeflab-mlflow \\
#       --from-literal=admin-password=$(openssl rand -hex 32) --from-literal=user-key=$(openssl rand -hex 32) \\
#       --from-literal=flask-secret=$(openssl rand -hex 32) \\
#       --from-literal=database-uri=postgresql://mlflow:PASSWORD@postgres.reeflab.svc:5432/mlflow \\
#       --from-literal=auth-database-uri=postgresql://mlflow:PASSWORD@postgres.reeflab.svc:5432/mlflow \\
#       --from-literal=s3-access-key=KEY --from-literal=s3-secret-key=SECRET
# - the hub gets REEFLAB_MLFLOW_URL=http://reeflab-mlflow.reeflab.svc:5005 and, from the same Secret,
#   REEFLAB_MLFLOW_ADMIN_PASSWORD (admin-password) and REEFLAB_MLFLOW_USER_KEY (user-key): its pre-spawn hook
#   makes each user's MLflow account and gives their server MLFLOW_TRACKING_URI/_USERNAME/_PASSWORD.
# Every request needs an MLflow account (basic-auth, NO_PERMISSIONS by default), and each account sees its own
# experiments only; artifacts go through MLflow (--serve-artifacts), so users never hold the bucket's key.
"""


def render_yaml(manifests: list[Manifest], header: str) -> str:
    import yaml

    return header + "".join("---\n" + yaml.safe_dump(m, sort_keys=False) for m in manifests)
