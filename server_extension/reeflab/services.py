"""The services of one user server, as the extension builds them and every handler reaches them."""

from __future__ import annotations

from dataclasses import dataclass

from .annotation.service import AnnotationService
from .catalog.service import CatalogService
from .checks.service import ModuleCheckService
from .deployments.service import DeploymentService
from .examples import ExamplesService
from .identity import HubIdentity
from .jobs.service import JobService
from .monitoring.platform import PlatformUsage
from .monitoring.service import MonitoringService
from .pipelines.service import PipelineService
from .profiles import ProfileStore
from .runs.service import RunService
from .serverless.gateway import ServerlessGateway
from .storage.service import StorageService
from .training.federated import FederatedService
from .training.publish import PublishService
from .training.tracking import TrackingService


@dataclass(frozen=True)
class Services:
    """`settings["reeflab"]`: handlers reach it as `self.services` (see handlers/base.py)."""

    profiles: ProfileStore
    identity: HubIdentity
    catalog: CatalogService
    deployments: DeploymentService
    jobs: JobService
    pipelines: PipelineService
    storage: StorageService
    federated: FederatedService
    serverless: ServerlessGateway
    examples: ExamplesService
    tracking: TrackingService
    publish: PublishService
    checks: ModuleCheckService
    annotation: AnnotationService
    monitoring: MonitoringService
    platform: PlatformUsage

    @property
    def runs(self) -> tuple[RunService, ...]:
        """The services of long-running things (the run-lifecycle core): watched while the server runs."""
        return (self.deployments, self.jobs, self.pipelines, self.checks)
