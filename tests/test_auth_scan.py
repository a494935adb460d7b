"""Every ReefLab handler requires an authenticated user and an authorization check."""

from __future__ import annotations

import json
import re

import pytest
from jupyter_server.auth import Authorizer
from reeflab.handlers.base import ReefLabHandler
from tornado import web
from tornado.httpclient import HTTPClientError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# values that match each route parameter, so that requests reach the handler
SAMPLES = {
    "module_id": "yolo-detector",
    "deployment_id": "0123abcd",
    "path": "v2/models/",
    "job_id": "0123abcd",
    "batch_id": "0123abcd",
    "project_id": "1",
}
# the two routes that pass requests on to another web service: a deployment's DEEPaaS API, MLflow
PROXIES = ("reeflab/deployments/0123abcd/v2/models/", "reeflab/mlflow/ajax-api/2.0/mlflow/experiments/create")


class DenyAll(Authorizer):
    """An authorizer that refuses every action: any handler it lets through skipped @authorized.

    Async, as authorizers may be: a handler that calls it without awaiting gets a truthy coroutine."""

    async def is_authorized(self, handler, user, action, resource):
        return False


def reeflab_routes(serverapp) -> list[tuple[str, type]]:
    """(path regex, handler class) of every ReefLab route, found by walking tornado's routers."""
    routes = []

    def walk(router):
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, type) and target.__module__.startswith("reeflab."):
                routes.append((rule.matcher.regex.pattern.rstrip("$"), target))
            else:
                walk(target)

    walk(serverapp.web_app.default_router)
    return routes


def implemented(handler: type) -> list[str]:
    base = ReefLabHandler if issubclass(handler, ReefLabHandler) else web.RequestHandler
    return [m for m in METHODS if getattr(handler, m.lower()) is not getattr(base, m.lower())]


def concrete_path(pattern: str, base_url: str) -> str:
    """A URL path (relative to the base URL) matching `pattern`, path parameters filled in."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: SAMPLES.get(m.group(1), "x"), pattern.replace("/?", "/"))
    return path[len(base_url.rstrip("/")) :] if path.startswith(base_url.rstrip("/")) else path


def test_reeflab_registers_handlers(jp_serverapp):
    assert reeflab_routes(jp_serverapp), "no ReefLab handler is registered"


async def refusals(jp_serverapp, jp_fetch, **options):
    """(method, path, refused request) for every method of every ReefLab route."""
    found = []
    for pattern, handler in reeflab_routes(jp_serverapp):
        for method in implemented(handler):
            path = concrete_path(pattern, jp_serverapp.base_url)
            with pytest.raises(HTTPClientError) as err:
                await jp_fetch(
                    path.lstrip("/"),
                    method=method,
                    body=b"{}" if method in ("POST", "PUT", "PATCH") else None,
                    allow_nonstandard_methods=True,
                    **options,
                )
            found.append((method, path, err.value))
    return found


async def test_anonymous_requests_are_refused_everywhere(jp_serverapp, jp_fetch):
    anonymous = {"headers": {"Authorization": ""}, "follow_redirects": False}
    for method, path, error in await refusals(jp_serverapp, jp_fetch, **anonymous):
        if error.code == 302:  # a browser GET of a page is sent to the login page, never to the handler
            assert method == "GET" and "login" in error.response.headers["Location"], path
        else:
            assert error.code in (401, 403), f"{method} {path} answered {error.code} without auth"


class TestAuthorization:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        app = {**jp_server_config["ServerApp"], "authorizer_class": DenyAll}
        return {**jp_server_config, "ServerApp": app}

    async def test_every_handler_asks_the_authorizer(self, jp_serverapp, jp_fetch):
        assert all(handler.auth_resource.startswith("reeflab") for _, handler in reeflab_routes(jp_serverapp))
        for method, path, error in await refusals(jp_serverapp, jp_fetch):
            assert error.code == 403, f"{method} {path} is not checked by @authorized"

    @pytest.mark.parametrize("path", PROXIES)
    async def test_the_proxies_await_an_async_authorizer(self, jp_fetch, path):
        for method in ("GET", "POST"):
            with pytest.raises(HTTPClientError) as err:
                await jp_fetch(path, method=method, body=b"{}" if method == "POST" else None)
            assert err.value.code == 403, f"{method} {path}"
            assert json.loads(err.value.response.body)["message"].startswith("not allowed to use")


@pytest.mark.parametrize("path", PROXIES)
async def test_the_proxies_refuse_writes_from_another_site(jp_fetch, path):
    # the proxies skip Jupyter's XSRF check (the service behind them has its own): a foreign Origin is refused
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(path, method="POST", body=b"{}", headers={"Origin": "https://elsewhere.example.org"})
    assert err.value.code == 403 and "cross-origin" in json.loads(err.value.response.body)["message"]
    with pytest.raises(HTTPClientError) as err:  # without it, the request goes on: to no deployment, no MLflow here
        await jp_fetch(path, method="POST", body=b"{}")
    assert err.value.code == 404


class NoPipelines(Authorizer):
    """Grants everything but pipelines: each kind of run is its own resource."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "reeflab:pipelines"


class TestOneResourcePerKind:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        app = {**jp_server_config["ServerApp"], "authorizer_class": NoPipelines}
        return {**jp_server_config, "ServerApp": app}

    async def test_handlers_sharing_verbs_check_their_own_resource(self, jp_fetch):
        # deployments, jobs and pipelines inherit the same verbs: the first request must not decide for the others
        for kind in ("jobs", "deployments"):
            assert (await jp_fetch("reeflab", "api", kind)).code == 200
        for path in (("pipelines",), ("pipelines", "0123abcd"), ("pipelines", "0123abcd", "log")):
            with pytest.raises(HTTPClientError) as err:
                await jp_fetch("reeflab", "api", *path)
            assert err.value.code == 403, path
        assert (await jp_fetch("reeflab", "api", "jobs")).code == 200
