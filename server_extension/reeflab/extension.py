"""The `reeflab` jupyter-server extension: route table and configuration."""

from __future__ import annotations

import asyncio
import gc
import os

import zmq
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Type, Unicode, default

from .annotation.service import AnnotationService
from .catalog.service import CatalogService
from .checks.service import ModuleCheckService
from .deployments.service import DeploymentService
from .examples import ExamplesService
from .handlers.annotation import (
    UI,
    DatasetsHandler,
    ExportHandler,
    LabelStudioProxyHandler,
    PreannotateHandler,
    ProjectHandler,
    ProjectsHandler,
    TrainHandler,
)
from .handlers.base import ReefLabHandler
from .handlers.catalog import ModuleFormHandler, ModuleHandler, ModulesHandler, RefreshHandler
from .handlers.checks import (
    CheckHandler,
    CheckLogHandler,
    CheckPageHandler,
    ChecksHandler,
    PublishedHandler,
    PublishedModuleHandler,
)
from .handlers.deployments import (
    DeploymentHandler,
    DeploymentProxyHandler,
    DeploymentsHandler,
    LogsHandler,
    RestartHandler,
)
from .handlers.examples import ExamplesHandler
from .handlers.federated import (
    ServerHandler,
    ServerLogsHandler,
    ServersHandler,
    StopHandler,
    TokenHandler,
    TokensHandler,
)
from .handlers.jobs import CancelHandler, JobHandler, JobLogHandler, JobsHandler, OutputHandler
from .handlers.monitoring import (
    DeploymentMetricsHandler,
    DriftHandler,
    PlatformStatusHandler,
    PlatformUsageHandler,
    PrometheusHandler,
    StatusHandler,
)
from .handlers.pipelines import PipelineCancelHandler, PipelineLogHandler, PipelineRunHandler, PipelinesHandler
from .handlers.serverless import BatchesHandler, BatchHandler, OscarProxyHandler, ServicesFromModulesHandler
from .handlers.storage import (
    ConnectionHandler,
    ConnectionsHandler,
    ConnectionTestHandler,
    FileHandler,
    FilesHandler,
    FoldersHandler,
    MountHandler,
    StorageHandler,
    TransferHandler,
    TransfersHandler,
)
from .handlers.system import InfoHandler, ProfilesHandler
from .handlers.training import (
    ExperimentsHandler,
    MlflowProxyHandler,
    ModelHandler,
    ModelsHandler,
    RunHandler,
    RunsHandler,
    TrackingInfoHandler,
)
from .identity import HubIdentity
from .jobs.service import JobService
from .monitoring.platform import PlatformUsage
from .monitoring.service import MonitoringService
from .pipelines.service import PipelineService
from .profiles import ProfileStore, default_profiles_path
from .serverless.gateway import ServerlessGateway
from .services import Services
from .storage.service import StorageService
from .training.federated import FederatedService
from .training.publish import PublishService
from .training.registry import ModelRegistry
from .training.tracking import TrackingService
from .training.weights_store import platform_store

MODULE_ID = r"(?P<module_id>[a-z0-9][a-z0-9\-_.]*)"
DEPLOYMENT_ID = r"(?P<deployment_id>[a-f0-9]{8})"
JOB_ID = r"(?P<job_id>[a-f0-9]{8})"
PIPELINE_RUN_ID = r"(?P<run_id>[\w\-]{1,64})"  # unknown ids get a 404 that says how to list yours
CONNECTION = r"(?P<name>[a-z][a-z0-9_\-]*)"
TRANSFER_ID = r"(?P<transfer_id>\w+)"
FEDERATED_ID = r"(?P<server_id>[\w\-]{1,64})"  # unknown ids get a 404 that says how to list yours
TOKEN_ID = r"(?P<token_id>[\w\-]{1,64})"
RUN_ID = r"(?P<run_id>[A-Za-z0-9_\-]{1,64})"
BATCH_ID = r"(?P<batch_id>[a-f0-9]{8})"
# a check's id, or a shared report's name ('<module>@<version>'); unknown ones get a 404 that says how to list yours
CHECK_ID = r"(?P<check_id>[\w\-.@%+]{1,128})"  # "@" may come as %40
MODEL_NAME = r"(?P<model_name>[a-z0-9][a-z0-9\-_.]*)"
PROJECT_ID = r"(?P<project_id>[0-9]{1,9})"


class ReefLabApp(ExtensionApp):
    """Serves the ReefLab REST API under /reeflab/api/ in every user server."""

    name = "reeflab"
    load_other_extensions = True

    profiles_file = Unicode(
        config=True,
        help="Hardware profiles file (hub_config/profiles.yaml format). "
        "Default: $REEFLAB_PROFILES_FILE, else the copy installed with the package.",
    )

    @default("profiles_file")
    def _default_profiles_file(self) -> str:
        return str(default_profiles_path())

    identity_class = Type(
        HubIdentity,
        klass=HubIdentity,
        config=True,
        help="Resolves the current user's groups (JupyterHub groups / VOs).",
    )

    def initialize_settings(self) -> None:
        kernels = self.serverapp.kernel_manager
        if getattr(kernels, "transport_encryption", None) == "disabled" and zmq.has("curve"):
            # kernels listen on 127.0.0.1, where every account of the machine could read their traffic:
            # encrypted wherever the kernel supports it (ipykernel does), and no warning per kernel about it
            kernels.transport_encryption = "auto"
        catalog = CatalogService(parent=self)
        storage = StorageService(parent=self, workspace=self.serverapp.root_dir)  # jobs/deployments use it too
        tracking = TrackingService(parent=self)
        registry = ModelRegistry(catalog.registry_dir, self.serverapp.root_dir)
        catalog.sources.append(registry.entries)  # the user's registered models are modules too
        checks = ModuleCheckService(parent=self, catalog=catalog)
        deployments = DeploymentService(parent=self, catalog=catalog, storage=storage, checks=checks)
        if deployments.backend.name == "kubernetes":  # its pods fetch registered weights from the owner's S3
            registry.store = platform_store(storage)
        serverless = ServerlessGateway(parent=self)  # also pre-annotation's way to the engine's warm workers
        self.settings["reeflab"] = Services(
            profiles=ProfileStore(self.profiles_file),
            identity=self.identity_class(parent=self),
            catalog=catalog,
            deployments=deployments,
            jobs=JobService(parent=self, notebook_root=self.serverapp.root_dir, storage=storage),
            pipelines=PipelineService(parent=self, notebook_root=self.serverapp.root_dir),
            storage=storage,
            federated=FederatedService(parent=self, apps_root=self.serverapp.root_dir),  # users' own Flower Apps
            serverless=serverless,
            examples=ExamplesService(parent=self, notebook_root=self.serverapp.root_dir),
            tracking=tracking,
            publish=PublishService(catalog, tracking, registry),
            checks=checks,
            annotation=AnnotationService(
                parent=self, catalog=catalog, workspace=self.serverapp.root_dir, storage=storage, serverless=serverless
            ),
            monitoring=MonitoringService(
                parent=self, deployments=deployments, workspace=self.serverapp.root_dir, tracking=tracking
            ),
            platform=PlatformUsage(parent=self),  # the admins' view: the usage service's answers
        )
        # the user's Label Studio makes its links under the route that serves its pages (LabelStudioProxyHandler)
        self.settings["reeflab"].annotation.server.prefix = url_path_join(self.serverapp.base_url, UI)
        self.settings["reeflab"].annotation.base_url = self.serverapp.base_url  # a WebDAV project's images

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        # deployments, jobs and pipelines started before a restart of this server: re-attach, or report them ended
        for runs in self.settings["reeflab"].runs:
            runs.ensure_watching()
        # storage the user had mounted: re-attach to the mounts, or mount again (off the event loop)
        owner = os.environ.get("JUPYTERHUB_USER") or self.settings["reeflab"].identity.standalone_name
        storage = self.settings["reeflab"].storage
        asyncio.get_running_loop().run_in_executor(None, storage.restore_mounts, owner)
        examples = self.settings["reeflab"].examples
        if examples.copy_at_start:  # a new user's first pipeline run finds the shipped ones in notebooks/
            try:
                await asyncio.get_running_loop().run_in_executor(None, examples.sync)
            except OSError as err:
                self.log.warning("could not copy the example notebooks into your files: %s", err)

    async def stop_extension(self) -> None:
        """Stop the background watchers; what they watch goes on, and the next start re-attaches to it."""
        await asyncio.gather(*(runs.stop_watching() for runs in self.settings["reeflab"].runs))
        await self.settings["reeflab"].annotation.stop()  # the user's Label Studio starts again when needed
        # the server is about to exit: Python's last garbage collections would scan its whole heap (the
        # modules' libraries, loaded models) for seconds, and keep a stopping platform waiting
        gc.freeze()

    def initialize_handlers(self) -> None:
        self.handlers.extend(
            [
                (r"/reeflab/api/info", InfoHandler),
                (r"/reeflab/api/profiles", ProfilesHandler),
                (r"/reeflab/api/examples", ExamplesHandler),
                (r"/reeflab/api/catalog/modules", ModulesHandler),
                (rf"/reeflab/api/catalog/modules/{MODULE_ID}", ModuleHandler),
                (rf"/reeflab/api/catalog/modules/{MODULE_ID}/form", ModuleFormHandler),
                (r"/reeflab/api/catalog/refresh", RefreshHandler),
                (r"/reeflab/api/catalog/published", PublishedHandler),
                (rf"/reeflab/api/catalog/published/{MODULE_ID}", PublishedModuleHandler),
                (r"/reeflab/api/checks", ChecksHandler),
                (rf"/reeflab/api/checks/{CHECK_ID}", CheckHandler),
                (rf"/reeflab/api/checks/{CHECK_ID}/log", CheckLogHandler),
                (rf"/reeflab/api/checks/{CHECK_ID}/report.html", CheckPageHandler),
                (r"/reeflab/api/deployments", DeploymentsHandler),
                (rf"/reeflab/api/deployments/{DEPLOYMENT_ID}", DeploymentHandler),
                (rf"/reeflab/api/deployments/{DEPLOYMENT_ID}/restart", RestartHandler),
                (rf"/reeflab/api/deployments/{DEPLOYMENT_ID}/logs", LogsHandler),
                (rf"/reeflab/api/deployments/{DEPLOYMENT_ID}/metrics", DeploymentMetricsHandler),
                (rf"/reeflab/api/deployments/{DEPLOYMENT_ID}/drift", DriftHandler),
                (r"/reeflab/api/metrics", PrometheusHandler),
                (r"/reeflab/api/status", StatusHandler),
                (r"/reeflab/api/platform/status", PlatformStatusHandler),
                (r"/reeflab/api/platform/usage", PlatformUsageHandler),
                (rf"/reeflab/deployments/{DEPLOYMENT_ID}/?(?P<path>.*)", DeploymentProxyHandler),
                (r"/reeflab/api/jobs", JobsHandler),
                (rf"/reeflab/api/jobs/{JOB_ID}", JobHandler),
                (rf"/reeflab/api/jobs/{JOB_ID}/cancel", CancelHandler),
                (rf"/reeflab/api/jobs/{JOB_ID}/log", JobLogHandler),
                (rf"/reeflab/api/jobs/{JOB_ID}/output", OutputHandler),
                (r"/reeflab/api/pipelines", PipelinesHandler),
                (rf"/reeflab/api/pipelines/{PIPELINE_RUN_ID}", PipelineRunHandler),
                (rf"/reeflab/api/pipelines/{PIPELINE_RUN_ID}/cancel", PipelineCancelHandler),
                (rf"/reeflab/api/pipelines/{PIPELINE_RUN_ID}/log", PipelineLogHandler),
                (r"/reeflab/api/storage", StorageHandler),
                (r"/reeflab/api/storage/connections", ConnectionsHandler),
                (rf"/reeflab/api/storage/connections/{CONNECTION}", ConnectionHandler),
                (rf"/reeflab/api/storage/connections/{CONNECTION}/test", ConnectionTestHandler),
                (rf"/reeflab/api/storage/connections/{CONNECTION}/mount", MountHandler),
                (rf"/reeflab/api/storage/connections/{CONNECTION}/files", FilesHandler),
                (rf"/reeflab/api/storage/connections/{CONNECTION}/file", FileHandler),
                (rf"/reeflab/api/storage/connections/{CONNECTION}/folders", FoldersHandler),
                (r"/reeflab/api/storage/transfers", TransfersHandler),
                (rf"/reeflab/api/storage/transfers/{TRANSFER_ID}", TransferHandler),
                (r"/reeflab/api/federated/servers", ServersHandler),
                (rf"/reeflab/api/federated/servers/{FEDERATED_ID}", ServerHandler),
                (rf"/reeflab/api/federated/servers/{FEDERATED_ID}/stop", StopHandler),
                (rf"/reeflab/api/federated/servers/{FEDERATED_ID}/logs", ServerLogsHandler),
                (r"/reeflab/api/federated/tokens", TokensHandler),
                (rf"/reeflab/api/federated/tokens/{TOKEN_ID}", TokenHandler),
                (r"/reeflab/api/training", TrackingInfoHandler),
                (r"/reeflab/api/training/experiments", ExperimentsHandler),
                (r"/reeflab/api/training/runs", RunsHandler),
                (rf"/reeflab/api/training/runs/{RUN_ID}", RunHandler),
                (r"/reeflab/api/training/models", ModelsHandler),
                (rf"/reeflab/api/training/models/{MODEL_NAME}", ModelHandler),
                (r"/reeflab/mlflow/?(?P<path>.*)", MlflowProxyHandler),
                (r"/reeflab/api/serverless/oscar/(?P<path>.*)", OscarProxyHandler),
                (r"/reeflab/api/serverless/services", ServicesFromModulesHandler),
                (r"/reeflab/api/serverless/batches", BatchesHandler),
                (rf"/reeflab/api/serverless/batches/{BATCH_ID}", BatchHandler),
                (r"/reeflab/api/annotation/projects", ProjectsHandler),
                (rf"/reeflab/api/annotation/projects/{PROJECT_ID}", ProjectHandler),
                (rf"/reeflab/api/annotation/projects/{PROJECT_ID}/preannotate", PreannotateHandler),
                (rf"/reeflab/api/annotation/projects/{PROJECT_ID}/export", ExportHandler),
                (rf"/reeflab/api/annotation/projects/{PROJECT_ID}/train", TrainHandler),
                (r"/reeflab/api/annotation/datasets", DatasetsHandler),
                (rf"/{UI}/(?P<path>.*)", LabelStudioProxyHandler),
            ]
        )


__all__ = ["ReefLabApp", "ReefLabHandler"]
