"""Revoking a hub user everywhere ReefLab gave them an account, so nothing of theirs outlives them.

`revoke_user` runs when the hub deletes a user (authenticators.py): the serverless engine stops and
forgets their services and jobs and removes their login, S3 key and buckets (its own admin-only
route, called with its service token); their MLflow account goes and its experiments move out of
their namespace; their processes are killed, their OS account deleted, and their home moved aside
(`<home>.deleted-<time>`, root's, 0700). `reconcile` is the safety net at the hub's start: accounts
of users the hub no longer has, or of an earlier user of the same name (an older generation), are
revoked the same way. The OIDC binding of a name to its person is never touched: a name does not
pass to another person.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import requests

from .. import accounts, generations
from ..annotation.databases import LabelStudioDatabases
from ..limits import Cgroup
from ..training.accounts import AccountRefused, TrackingAccounts
from ..training.tracking_server import recorded_generations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Targets:
    """Where a hub user has accounts: the engine (URL, file of its service token), MLflow, homes, OS accounts."""

    serverless_url: str = ""
    serverless_token_file: str = ""
    tracking_url: str = ""
    tracking_state_dir: str = ""
    homes_dir: str = ""
    os_accounts: bool = False
    label_studio_admin_database: str = ""  # the operator's PostgreSQL admin URL (users' Label Studio databases)
    timeout: float = 60


def home_of(name: str, targets: Targets) -> Path | None:
    """The user's home as the local spawner makes it (homes_dir/<name>), None for a name that is no folder name."""
    if not targets.homes_dir or name in ("", ".", "..") or "/" in name or "\0" in name:
        return None
    return Path(targets.homes_dir) / name


def revoke_user(name: str, targets: Targets, generation: str = "", logger: logging.Logger = log) -> dict[str, str]:
    """Revoke everything of hub user `name` (of `generation`, if known). Blocking: run it in a thread.

    Each part is tried even if another fails (what failed is retried by the reconciles); returns
    {part: what happened}, 'failed: ...' for a part that did not.
    """
    outcome: dict[str, str] = {}
    # the engine first: its workers run as the user's OS account, and must not be started again
    outcome["serverless"] = _attempt(name, "serverless", lambda: _revoke_serverless(name, targets, generation), logger)
    outcome["mlflow"] = _attempt(name, "mlflow", lambda: _revoke_tracking(name, targets), logger)
    outcome["label_studio"] = _attempt(
        name, "label_studio", lambda: _revoke_label_studio(name, targets, generation), logger
    )
    outcome["os"] = _attempt(name, "os", lambda: _revoke_os(name, targets), logger)
    logger.info("revoked deleted hub user %s: %s", name, "; ".join(f"{k}: {v}" for k, v in outcome.items()))
    return outcome


def _attempt(name: str, part: str, action, logger: logging.Logger) -> str:
    """Run one part of a revocation; its failure is logged and reported, never raised."""
    try:
        return action()
    except Exception as error:  # one part down must not keep the others from being revoked
        logger.error("could not revoke the %s account of deleted user %s: %s", part, name, error)
        return f"failed: {error}"


def _revoke_serverless(name: str, targets: Targets, generation: str) -> str:
    """The engine's admin-only route, with its own service token: services, jobs, login, S3 key and buckets."""
    if not targets.serverless_url:
        return "not configured"
    token = Path(targets.serverless_token_file).read_text().strip()
    url = targets.serverless_url.rstrip("/") + "/system/users/" + quote(name, safe="")
    if generation:
        url += "?" + urlencode({"generation": generation})
    answer = requests.delete(url, headers={"Authorization": f"Bearer {token}"}, timeout=targets.timeout)
    if answer.status_code == 409:  # a newer user of that name: nothing of the deleted one is left there
        return "nothing (a newer user holds the name)"
    if not answer.ok:
        raise RuntimeError(f"the engine answered {answer.status_code}: {answer.text.strip()[:200]}")
    done = answer.json()
    pending = "" if done.get("s3_revoked", True) else ", S3 removal pending (the engine retries)"
    return (
        f"{len(done.get('services', []))} services, {done.get('jobs', 0)} jobs, buckets {done.get('buckets')}{pending}"
    )


def _revoke_tracking(name: str, targets: Targets) -> str:
    """The MLflow account and its permissions go; its experiments are kept for MLflow's admin only."""
    if not targets.tracking_url:
        return "not configured"
    try:
        moved = TrackingAccounts(targets.tracking_url, Path(targets.tracking_state_dir)).revoke(name)
    except AccountRefused as refused:
        return f"nothing ({refused})"
    return f"account deleted, {len(moved)} experiments moved aside"


def _revoke_label_studio(name: str, targets: Targets, generation: str = "") -> str:
    """The user's Label Studio database on PostgreSQL (their projects) and its role are dropped."""
    if not targets.label_studio_admin_database:
        return "not configured"
    return LabelStudioDatabases(targets.label_studio_admin_database).revoke(name, generation)


def _revoke_os(name: str, targets: Targets) -> str:
    """Processes, OS account and cgroup go (as root), and the home moves aside in any case."""
    home = home_of(name, targets)
    if targets.os_accounts and os.geteuid() == 0:
        found = accounts.lookup(name)
        moved = accounts.retire_account(name, home)
        if found is not None:
            _remove_cgroup(f"user-{found.name}")
        account = f"account {found.name} deleted" if found is not None else "no OS account"
        return f"{account}, home moved to {moved[0] if moved else 'nowhere (none)'}"
    target = accounts.move_aside(home) if home else None  # one shared account: the home still goes aside
    return f"home moved to {target}" if target else "no home"


def _remove_cgroup(name: str, timeout: float = 5) -> None:
    """The user's cgroup (limits of their server, deployments and jobs inside, delegated to them) goes, whole."""
    group = Cgroup.find(name)
    if group is None:
        return
    deadline = time.monotonic() + timeout
    for folder in group.folders.values():
        kill = folder / "cgroup.kill"
        with contextlib.suppress(OSError):
            if kill.exists():
                kill.write_text("1")
        while folder.exists() and time.monotonic() < deadline:
            inner = sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for sub in [*inner, folder]:
                with contextlib.suppress(OSError):
                    sub.rmdir()
            if folder.exists():
                time.sleep(0.05)
        if folder.exists():
            log.warning("could not remove cgroup %s of a deleted user", folder)


def reconcile(
    users: dict[str, str], targets: Targets, tracking_wait: float = 300, logger: logging.Logger = log
) -> dict[str, list[str]]:
    """Revoke the OS and MLflow accounts of users the hub no longer has, or of an older generation of a name.

    `users`: {name: generation} of every hub user now. The engine compares its own records with the
    hub's users itself (serverless/engine.py `sweep_users`). Blocking: run it in a thread.
    """
    revoked: dict[str, list[str]] = {"os": [], "mlflow": []}
    if targets.label_studio_admin_database:
        revoked["label_studio"] = []
        databases = LabelStudioDatabases(targets.label_studio_admin_database)
        try:
            made = databases.managed()
        except Exception as error:  # PostgreSQL down: the next start tries again
            logger.error("Label Studio databases of deleted users not dropped: %s", error)
            made = {}
        for name, recorded in sorted(made.items()):
            if name in users and not (recorded and generations.older(recorded, users[name])):
                continue
            logger.warning("Label Studio database of %s is a deleted user's (%s): dropping it", name, recorded or "?")
            outcome = _attempt(name, "label_studio", lambda n=name, g=recorded: databases.revoke(n, g), logger)
            if not outcome.startswith("failed"):
                revoked["label_studio"].append(name)
    if targets.os_accounts and os.geteuid() == 0:
        for found in list(accounts.managed_accounts()):
            home = home_of(found.hub_name, targets)
            if home is None or not accounts.same_path(found.home, home):
                continue  # not made by this hub (another one on the machine may hold the name)
            current = users.get(found.hub_name)
            is_stale = current is None or (found.generation and generations.older(found.generation, current))
            if is_stale and accounts.recorded_generation(found.hub_name) == found.generation:  # not remade meanwhile
                why = "no such hub user" if current is None else f"made for {found.generation}, the user is {current}"
                logger.warning(
                    "OS account %s of %s is a deleted user's (%s): revoking it", found.name, found.hub_name, why
                )
                outcome = _attempt(found.hub_name, "os", lambda f=found: _revoke_os(f.hub_name, targets), logger)
                if not outcome.startswith("failed"):
                    revoked["os"].append(found.hub_name)
    if targets.tracking_url:
        stale = {
            name: recorded
            for name, recorded in recorded_generations(Path(targets.tracking_state_dir)).items()
            if name not in users or (recorded and generations.older(recorded, users[name]))
        }
        if stale:
            tracking = TrackingAccounts(targets.tracking_url, Path(targets.tracking_state_dir))
            try:
                tracking.wait_ready(tracking_wait)  # the hub starts MLflow with itself
            except RuntimeError as error:
                logger.error("MLflow accounts of deleted users not revoked: %s", error)
                return revoked
            for name in sorted(stale):
                if recorded_generations(Path(targets.tracking_state_dir)).get(name) != stale[name]:
                    continue  # remade meanwhile (a spawn of the new user revoked the old account itself)
                logger.warning("MLflow account %s is a deleted user's (%s): revoking it", name, stale[name] or "?")
                outcome = _attempt(name, "mlflow", lambda n=name: _revoke_tracking(n, targets), logger)
                if not outcome.startswith("failed"):
                    revoked["mlflow"].append(name)
    return revoked
