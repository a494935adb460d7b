"""Training: your MLflow experiments and runs, and your models registered in the marketplace."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from pydantic import ValidationError
from tornado import web

from ..errors import BadRequest
from ..training.registry import RegisterRequest
from .base import ReefLabHandler


def parse_register(body: bytes) -> RegisterRequest:
    try:
        return RegisterRequest.model_validate_json(body or b"{}")
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False)
        )
        raise BadRequest(f"Invalid registration: {problems}") from None


class TrainingBase(ReefLabHandler):
    auth_resource = "reeflab:training"

    @property
    def tracking(self):
        return self.reeflab["tracking"]

    @property
    def publish(self):
        return self.reeflab["publish"]


class TrackingInfoHandler(TrainingBase):
    """GET /reeflab/api/training: where runs are tracked, under which account (never its password)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(self.tracking.info(self.username))


class ExperimentsHandler(TrainingBase):
    """GET: your experiments. POST {"name"}: your experiment `<you>/<name>`, created if needed."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        found = await self.run_blocking(self.tracking.experiments, self.username)
        self.write_json({"experiments": [{"id": e.experiment_id, "name": e.name} for e in found]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            name = json.loads(self.request.body or b"{}").get("name")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str):
            raise BadRequest('Send {"name": "<experiment>"}.')
        self.write_json(await self.run_blocking(self.tracking.experiment, self.username, name), status=201)


class RunsHandler(TrainingBase):
    """GET ?experiment=&max_results=: your runs, newest first, with params, metrics and a UI link."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        value = self.get_argument("max_results", "100")
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise BadRequest("max_results must be a whole number between 1 and 1000")
        runs = await self.run_blocking(
            self.tracking.runs, self.username, self.get_argument("experiment", None), int(value)
        )
        self.write_json({"runs": runs})


class RunHandler(TrainingBase):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.write_json(await self.run_blocking(self.tracking.run, self.username, run_id))


class ModelsHandler(TrainingBase):
    """GET: your registered models. POST: register weights (an MLflow run or a .pt) as a new version."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"models": [m.public() for m in self.publish.registry.list()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = parse_register(self.request.body)
        model = await self.run_blocking(self.publish.register, self.username, request)
        self.write_json(model.public(), status=201)


class ModelHandler(TrainingBase):
    """GET: one registered model. DELETE: remove it (all versions) from the marketplace."""

    @web.authenticated
    @authorized
    async def get(self, model_name: str) -> None:
        self.write_json(self.publish.registry.get(model_name).public())

    @web.authenticated
    @authorized
    async def delete(self, model_name: str) -> None:
        await self.run_blocking(self.publish.delete, model_name)
        self.set_status(204)
        self.finish()
