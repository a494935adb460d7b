"""Notebook jobs at scale: each job a Kubernetes batch/v1 Job running the same runner in the user's image.

The Job's pod mounts the user's home volume (KubeSpawner's `claim-{username}` by default) where the user's
server has it, so the notebook, its data, the output notebook and the job folder (spec.json in, status.json
and job.log out) are the same files the server sees: progress and failing cells read exactly as locally.
The manifest is built by a pure function, checked offline against the Kubernetes schema in tests.
A distributed job (`processes`) on one node is the same Job, its runner starting torchrun with one rank per GPU of
the profile; on several nodes (`nodes`) it is a JobSet (kubernetes-sigs/jobset: the API Kubeflow Trainer builds
its TrainJobs on, needing only the JobSet controller), one pod per node with the profile's GPUs each.
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


def pod_template(
    job: Job,
    profile: HardwareProfile,
    image: str,
    folder: Path,
    *,
    claim: str,
    home: str = "/home/jovyan",
    env: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
    secret: str | None = None,
    run: str | None = None,
) -> Manifest:
    """The pod of a job (or of each node of a distributed one): the runner for `folder` with the profile's hardware
    (all its GPUs), on the user's home volume, restricted. `run`: the shell command (default: the runner)."""
    resources = {"cpu": cpu_quantity(profile.cpu), "memory": str(profile.memory_bytes)}
    pod: Manifest = {}
    if profile.gpu and profile.gpu.count:
        resources[profile.gpu.resource] = str(profile.gpu.count)
        placement = {"nodeSelector": dict(profile.node_selector), "tolerations": [dict(t) for t in profile.tolerations]}
        pod = {key: value for key, value in placement.items() if value}
    threads = max(1, math.ceil(profile.cpu))
    if job.processes:  # the CPUs shared among the node's ranks
        threads = max(1, math.floor(profile.cpu / job.processes))
    variables = {**(env or {}), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "YOLO_OFFLINE": "1"}
    variables.update(REEFLAB_JOB_ID=job.id, MLFLOW_DISABLE_TELEMETRY="true", HOME=home)
    if job.processes:
        variables["REEFLAB_DDP_BACKEND"] = "nccl" if profile.gpu_count else "gloo"
    # the folder is <state dir>/<hex id>: no user text reaches the shell
    run = run or f"exec python -m reeflab.jobs.runner {folder} >> {folder / LOG_FILE} 2>&1"
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
    return {"metadata": {"labels": labels}, "spec": pod}


def _metadata(job: Job, namespace: str, extra: dict[str, str] | None) -> Manifest:
    labels = kube.labels("reeflab-job", job_name(job.id), job.owner, extra)
    notes = {kube.ID: job.id, kube.OWNER: job.owner, "reeflab.io/notebook": job.notebook}
    return {"name": job_name(job.id), "namespace": namespace, "labels": labels, "annotations": notes}


def job_manifest(
    job: Job,
    profile: HardwareProfile,
    image: str,
    namespace: str,
    folder: Path,
    *,
    ttl_seconds: int = 86400,
    extra: dict[str, str] | None = None,
    **pod: Any,
) -> Manifest:
    """A Job with one pod, never restarted: the runner for `folder` with the profile's hardware (a distributed job
    on one node too: the runner starts torchrun there, one rank per GPU of the profile).

    `pod`: what pod_template() takes (claim, home, env, secret: the Secret of its storage credentials).
    """
    spec = {"backoffLimit": 0, "ttlSecondsAfterFinished": ttl_seconds}  # a notebook is not retried
    spec["template"] = pod_template(job, profile, image, folder, extra=extra, **pod)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(job, namespace, extra), "spec": spec}


JOBSET_GROUP, JOBSET_VERSION, JOBSETS = "jobset.x-k8s.io", "v1alpha2", "jobsets"
NODES = "node"  # the JobSet's one replicated job: its pods are <name>-node-0-<node rank>.<name>
RENDEZVOUS_PORT = 29400


def jobset_manifest(
    job: Job,
    profile: HardwareProfile,
    image: str,
    namespace: str,
    folder: Path,
    *,
    ttl_seconds: int = 86400,
    extra: dict[str, str] | None = None,
    **pod: Any,
) -> Manifest:
    """A distributed job on several nodes: a JobSet (kubernetes-sigs/jobset) of one Indexed Job with a pod per
    node, each with the profile's hardware (all its GPUs), never restarted. JobSet gives the pods stable names
    (a headless Service), so every node's runner starts torchrun with node 0 as the rendezvous (torchrun's
    static one, as Kubeflow Trainer's torch runtime does); node 0 writes the job's log and status, node N
    `node-N.log` and `node-N.json`, every rank `rank-<RANK>.log`, all in the job folder on the user's home volume
    (a ReadWriteMany volume, as pods on several nodes mount it)."""
    name = job_name(job.id)
    index = "${JOB_COMPLETION_INDEX:-0}"
    log = f'log={folder / LOG_FILE}; [ "{index}" = 0 ] || log={folder}/node-{index}.log'
    run = f'{log}; REEFLAB_NODE_RANK={index} exec python -m reeflab.jobs.runner {folder} >> "$log" 2>&1'
    env = {**(pod.pop("env", None) or {}), "REEFLAB_MASTER_ADDR": f"{name}-{NODES}-0-0.{name}"}
    env["REEFLAB_MASTER_PORT"] = str(RENDEZVOUS_PORT)
    template = pod_template(job, profile, image, folder, extra=extra, env=env, run=run, **pod)
    template["spec"]["containers"][0]["ports"] = [
        {"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}
    ]
    nodes = job.nodes
    indexed = {"parallelism": nodes, "completions": nodes, "completionMode": "Indexed", "backoffLimit": 0}
    replicated = {"name": NODES, "replicas": 1, "template": {"metadata": dict(template["metadata"]), "spec": indexed}}
    indexed["template"] = template
    spec = {
        "network": {"enableDNSHostnames": True, "subdomain": name},
        "failurePolicy": {"maxRestarts": 0},  # a failed node fails the job, as a failed rank does
        "successPolicy": {"operator": "All"},
        "ttlSecondsAfterFinished": ttl_seconds,
        "replicatedJobs": [replicated],
    }
    meta = _metadata(job, namespace, extra)
    return {"apiVersion": f"{JOBSET_GROUP}/{JOBSET_VERSION}", "kind": "JobSet", "metadata": meta, "spec": spec}


def secret_manifest(job: Job, namespace: str, secrets: dict[str, str]) -> Manifest:
    """The job's storage credentials (only the connections it names): never inline in the Job."""
    labels = kube.labels("reeflab-job", job_name(job.id), job.owner)
    meta = {"name": job_name(job.id), "namespace": namespace, "labels": labels, "annotations": {kube.ID: job.id}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": dict(secrets)}


class KubernetesJobBackend(KubernetesClient, JobBackend):
    """Runs each job as a Kubernetes Job in the user's namespace, on the user's home volume."""

    name = "kubernetes"
    max_nodes = 64  # a job on several nodes is a JobSet

    home_claim = Unicode("claim-{username}", config=True, help="PVC of the user's home; '{username}' is replaced")
    home_mount = Unicode("/home/jovyan", config=True, help="Where the user's server mounts that volume")
    ttl_seconds = Int(86400, config=True, help="Finished Jobs are removed by Kubernetes after this many seconds")

    def manifest(self, job: Job, folder: Path, profile: HardwareProfile, secret: str | None = None) -> Manifest:
        """A batch/v1 Job; a JobSet for a job on several nodes."""
        catalog = self.profiles()
        claim = self.home_claim.replace("{username}", object_slug(job.owner))
        env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
        render = jobset_manifest if job.nodes > 1 else job_manifest
        return render(
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
            if manifest["kind"] == "JobSet":
                created = await client.CustomObjectsApi(api).create_namespaced_custom_object(
                    JOBSET_GROUP, JOBSET_VERSION, self.namespace, JOBSETS, manifest
                )
                uid = created["metadata"]["uid"]
            else:
                uid = (await client.BatchV1Api(api).create_namespaced_job(self.namespace, manifest)).metadata.uid
            if secrets:  # removed with the Job (ttlSecondsAfterFinished, cancel) by Kubernetes' garbage collector
                kind = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"]}
                owner = {**kind, "name": job_name(job.id), "uid": uid}
                patch = {"metadata": {"ownerReferences": [owner]}}
                await client.CoreV1Api(api).patch_namespaced_secret(job_name(job.id), self.namespace, patch)
        except ApiException as err:
            raise ReefLabError(f"Kubernetes refused the job ({err.status} {err.reason}); ask an admin.") from None
        return {"namespace": self.namespace, "name": job_name(job.id), "kind": manifest["kind"]}

    async def status(self, job: Job, folder: Path) -> dict[str, Any]:
        status = read_status(folder)
        if status.get("state") in ("completed", "failed", "cancelled"):
            return status
        if job.runtime.get("kind") == "JobSet":
            return await self._jobset_status(job, folder, status)
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

    async def _jobset_status(self, job: Job, folder: Path, status: dict[str, Any]) -> dict[str, Any]:
        """A JobSet that failed (a node's pod died, a node's runner failed) before node 0's runner said why."""
        try:
            found = await client.CustomObjectsApi(await self._api()).get_namespaced_custom_object(
                JOBSET_GROUP, JOBSET_VERSION, job.runtime["namespace"], JOBSETS, job.runtime["name"]
            )
        except ApiException as err:
            if err.status == 404:
                return {**status, "state": "failed", "reason": "its JobSet disappeared"}
            raise
        for condition in (found.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                lines = "\n".join(tail_lines(folder / LOG_FILE, 15))
                why = condition.get("message") or condition.get("reason") or "a node failed"
                return {
                    **status,
                    "state": "failed",
                    "reason": f"its JobSet failed ({why}). Last lines of its log:\n{lines}",
                }
        return status

    async def stop(self, job: Job, folder: Path) -> None:
        if job.runtime.get("kind") == "JobSet":
            with contextlib.suppress(ApiException, KeyError):
                await client.CustomObjectsApi(await self._api()).delete_namespaced_custom_object(
                    JOBSET_GROUP, JOBSET_VERSION, job.runtime["namespace"], JOBSETS, job.runtime["name"],
                    propagation_policy="Foreground", grace_period_seconds=5,
                )  # fmt: skip
            return
        with contextlib.suppress(ApiException, KeyError):
            await client.BatchV1Api(await self._api()).delete_namespaced_job(
                job.runtime["name"], job.runtime["namespace"], propagation_policy="Foreground", grace_period_seconds=5
            )

    async def logs(self, job: Job, folder: Path, tail: int) -> list[str]:
        return tail_lines(folder / LOG_FILE, tail)
