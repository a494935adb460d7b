"""Notebook jobs at scale: each job a Kubernetes batch/v1 Job running the same runner in the user's image.

The Job's pod mounts the user's home volume (KubeSpawner's `claim-{username}` by default) where the user's
server has it, so the notebook, its data, the output notebook and the job folder (spec.json in, status.json
and job.log out) are the same files the server sees: progress and failing cells read exactly as locally.
The manifest is built by a pure function, checked offline against the Kubernetes schema in tests.
Jobs run in the user's own namespace (REEFLAB_NAMESPACE, set by the hub's spawner), where the user's
ServiceAccount may create, read and delete Jobs and create/patch their Secrets (hub/kubernetes_isolation.py);
the pod mounts no token and passes Pod Security "restricted".
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from traitlets import Int, Unicode

from ... import kube
from ...errors import ReefLabError
from ...kube import KubernetesClient, cpu_quantity, object_slug
from ...processes import tail_lines
from ...profiles import HardwareProfile
from ..models import Job
from ..store import LOG_FILE, read_status
from .base import JobBackend

CONTAINER = "notebook"
Manifest = dict[str, Any]
PASSED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "AWS_ENDPOINT_URL")


def job_name(job_id: str) -> str:
    return object_slug(f"reeflab-job-{job_id}")


def job_manifest(
    job: Job,
    profile: HardwareProfile,
    image: str,
    namespace: str,
    folder: Path,
    *,
    claim: str,
    home: str = "/home/jovyan",
    ttl_seconds: int = 86400,
    env: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
    secret: str | None = None,
) -> Manifest:
    """A Job with one pod, never restarted: the runner for `folder` with the profile's hardware.

    `secret`: the Secret holding its storage credentials (secret_manifest()), read through envFrom.
    """
    resources = {"cpu": cpu_quantity(profile.cpu), "memory": str(profile.memory_bytes)}
    pod: Manifest = {}
    if profile.gpu and profile.gpu.count:
        resources[profile.gpu.resource] = str(profile.gpu.count)
        placement = {"nodeSelector": dict(profile.node_selector), "tolerations": [dict(t) for t in profile.tolerations]}
        pod = {key: value for key, value in placement.items() if value}
    threads = str(max(1, math.ceil(profile.cpu)))
    variables = {**(env or {}), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "YOLO_OFFLINE": "1"}
    variables.update(REEFLAB_JOB_ID=job.id, MLFLOW_DISABLE_TELEMETRY="true", HOME=home)
    # the folder is <state dir>/<hex id>: no user text reaches the shell
    run = f"exec python -m reeflab.jobs.runner {folder} >> {folder / LOG_FILE} 2>&1"
    container: Manifest = {
        "name": CONTAINER,
        "image": image,
        "command": ["/bin/sh", "-c", run],
        "workingDir": home,
        "env": [{"name": k, "value": v} for k, v in variables.items()],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "home", "mountPath": home}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    security = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100}
    pod.update(containers=[container], restartPolicy="Never", automountServiceAccountToken=False)
    pod.update(enableServiceLinks=False, volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": claim}}])
    pod["securityContext"] = {**security, "seccompProfile": {"type": "RuntimeDefault"}}
    labels = kube.labels("reeflab-job", job_name(job.id), job.owner, extra)
    notes = {kube.ID: job.id, kube.OWNER: job.owner, "reeflab.io/notebook": job.notebook}
    meta = {"name": job_name(job.id), "namespace": namespace, "labels": labels, "annotations": notes}
    spec = {"backoffLimit": 0, "ttlSecondsAfterFinished": ttl_seconds}  # a notebook is not retried
    spec["template"] = {"metadata": {"labels": labels}, "spec": pod}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def secret_manifest(job: Job, namespace: str, secrets: dict[str, str]) -> Manifest:
    """The job's storage credentials (only the connections it names): never inline in the Job."""
    labels = kube.labels("reeflab-job", job_name(job.id), job.owner)
    meta = {"name": job_name(job.id), "namespace": namespace, "labels": labels, "annotations": {kube.ID: job.id}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": dict(secrets)}


class KubernetesJobBackend(KubernetesClient, JobBackend):
    """Runs each job as a Kubernetes Job in the user's namespace, on the user's home volume."""

    name = "kubernetes"

    home_claim = Unicode("claim-{username}", config=True, help="PVC of the user's home; '{username}' is replaced")
    home_mount = Unicode("/home/jovyan", config=True, help="Where the user's server mounts that volume")
    ttl_seconds = Int(86400, config=True, help="Finished Jobs are removed by Kubernetes after this many seconds")

    def manifest(self, job: Job, folder: Path, profile: HardwareProfile, secret: str | None = None) -> Manifest:
        catalog = self.profiles()
        claim = self.home_claim.replace("{username}", object_slug(job.owner))
        env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
        return job_manifest(
            job, profile, catalog.image_of(profile), self.namespace, folder,
            claim=claim, home=self.home_mount, ttl_seconds=self.ttl_seconds, env=env, extra=self.extra_labels,
            secret=secret,
        )  # fmt: skip

    async def start(
        self, job: Job, folder: Path, spec: dict[str, Any], profile: HardwareProfile, secrets: dict | None = None
    ) -> dict:
        (folder / "spec.json").write_text(json.dumps(spec, indent=1))
        manifest = self.manifest(job, folder, profile, secret=job_name(job.id) if secrets else None)
        api = await self._api()
        try:
            if secrets:  # first, so the pod never waits for it
                await client.CoreV1Api(api).create_namespaced_secret(
                    self.namespace, secret_manifest(job, self.namespace, secrets)
                )
            created = await client.BatchV1Api(api).create_namespaced_job(self.namespace, manifest)
            if secrets:  # removed with the Job (ttlSecondsAfterFinished, cancel) by Kubernetes' garbage collector
                owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name(job.id), "uid": created.metadata.uid}
                patch = {"metadata": {"ownerReferences": [owner]}}
                await client.CoreV1Api(api).patch_namespaced_secret(job_name(job.id), self.namespace, patch)
        except ApiException as err:
            raise ReefLabError(f"Kubernetes refused the job ({err.status} {err.reason}); ask an admin.") from None
        return {"namespace": self.namespace, "name": job_name(job.id)}

    async def status(self, job: Job, folder: Path) -> dict[str, Any]:
        status = read_status(folder)
        if status.get("state") in ("completed", "failed", "cancelled"):
            return status
        try:
            found = await client.BatchV1Api(await self._api()).read_namespaced_job(
                job.runtime["name"], job.runtime["namespace"]
            )
        except ApiException as err:
            if err.status == 404:
                return {**status, "state": "failed", "reason": "its Kubernetes Job disappeared"}
            raise
        if found.status and found.status.failed:  # the pod died before the runner could say why (OOM, eviction)
            lines = "\n".join(tail_lines(folder / LOG_FILE, 15))
            return {**status, "state": "failed", "reason": f"the job's pod failed. Last lines of its log:\n{lines}"}
        return status

    async def stop(self, job: Job, folder: Path) -> None:
        with contextlib.suppress(ApiException, KeyError):
            await client.BatchV1Api(await self._api()).delete_namespaced_job(
                job.runtime["name"], job.runtime["namespace"], propagation_policy="Foreground", grace_period_seconds=5
            )

    async def logs(self, job: Job, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)
