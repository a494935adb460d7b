"""The admins' Platform view through a user's server when the hub gave it no usage service, or one that does not
answer: the route says so in words (the section in the panel shows them). Through a real hub: test_usage_service.py."""

from __future__ import annotations

import asyncio

import pytest
from reeflab.client import ReefLabClientError, monitoring
from reeflab.files import free_port


async def off_loop(func, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


async def test_without_a_usage_service_the_route_says_it_is_not_configured(connection, monkeypatch):
    monkeypatch.delenv("REEFLAB_USAGE_SERVICE_URL", raising=False)
    for call in (monitoring.platform_status, monitoring.platform_usage):
        with pytest.raises(ReefLabClientError) as missing:
            await off_loop(call, connection=connection)
        assert missing.value.status == 503
        assert "usage service is not configured" in missing.value.message


async def test_a_usage_service_that_does_not_answer_is_a_502_saying_so(connection, monkeypatch):
    monkeypatch.setenv("REEFLAB_USAGE_SERVICE_URL", f"http://127.0.0.1:{free_port()}/services/reeflab-usage/")
    with pytest.raises(ReefLabClientError) as down:
        await off_loop(monitoring.platform_status, connection=connection)
    assert down.value.status == 502 and "does not answer" in down.value.message
    with pytest.raises(ReefLabClientError) as bad:  # this server's own check comes first
        await off_loop(monitoring.platform_usage, since=60, connection=connection)
    assert bad.value.status == 400 and "'since' must be a whole number from 3600" in bad.value.message
