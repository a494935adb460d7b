"""The same pipeline at scale: Elyra's export to Kubeflow Pipelines (compiled KFP YAML).

Elyra's KFP export packs every node's file with its dependencies and uploads the archives to the
object storage named in a KFP runtime configuration; the compiled YAML then points the pods (the
node's `runtime_image`, ReefLab's single-user image from images/) at them, with the storage keys
taken from a Kubernetes Secret (`cos_secret`, keys AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). The runtime
configuration is written to a private temporary Jupyter data folder (0600), so the storage keys
never reach a command line or the user's own Elyra settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUNTIME_CONFIG = "reeflab_kfp"


def kfp_runtime_config(
    api_endpoint: str, cos_endpoint: str, cos_bucket: str, key: dict[str, str], cos_secret: str
) -> dict:
    """An Elyra `kfp` runtime configuration (metadata instance) for the export."""
    return {
        "display_name": "ReefLab Kubeflow Pipelines",
        "schema_name": "kfp",
        "metadata": {
            "display_name": "ReefLab Kubeflow Pipelines",
            "api_endpoint": api_endpoint,
            "auth_type": "NO_AUTHENTICATION",
            "engine": "Argo",
            "cos_endpoint": cos_endpoint,
            "cos_bucket": cos_bucket,
            # pods read the keys from this Kubernetes Secret: with USER_CREDENTIALS Elyra writes them into the YAML
            "cos_auth_type": "KUBERNETES_SECRET",
            "cos_secret": cos_secret,
            "cos_username": key["access_key"],
            "cos_password": key["secret_key"],
            "runtime_type": "KUBEFLOW_PIPELINES",
            "tags": [],
        },
    }


def export_kfp(
    pipeline: str | os.PathLike,
    output: str | os.PathLike,
    cos_endpoint: str,
    cos_bucket: str,
    key: dict[str, str],
    api_endpoint: str = "http://ml-pipeline.kubeflow:8888/pipeline",
    cos_secret: str = "reeflab-pipelines-s3",
    timeout: float = 300,
) -> Path:
    """Compile `pipeline` to KFP YAML at `output` with `elyra-pipeline export`; RuntimeError with Elyra's words."""
    pipeline, output = Path(pipeline).resolve(), Path(output).resolve()
    with tempfile.TemporaryDirectory(prefix="reeflab-kfp-") as data:
        for sub in ("metadata/runtimes", "metadata/component-catalogs", "runtime"):
            (Path(data) / sub).mkdir(parents=True, mode=0o700)
        config = Path(data) / "metadata" / "runtimes" / f"{RUNTIME_CONFIG}.json"
        handle = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as out:
            json.dump(kfp_runtime_config(api_endpoint, cos_endpoint, cos_bucket, key, cos_secret), out)
        env = {**os.environ, "JUPYTER_DATA_DIR": data, "JUPYTER_RUNTIME_DIR": str(Path(data) / "runtime")}
        command = [str(Path(sys.executable).parent / "elyra-pipeline"), "export", str(pipeline)]
        command += ["--runtime-config", RUNTIME_CONFIG, "--output", str(output), "--overwrite"]
        done = subprocess.run(
            command, cwd=pipeline.parent, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    if done.returncode != 0 or not output.is_file():
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip() and "Warning" not in line]
        raise RuntimeError(f"export of {pipeline.name} failed: " + "\n".join(lines[-8:]))
    return output
