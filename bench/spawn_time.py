"""Spawn-to-ready time of a user server with and without the ReefLab extension (one run).

One real JupyterHub in local mode; user `reef` gets servers as shipped, user `plain` gets
servers with `reeflab` disabled. After a warm-up spawn, spawns alternate between the two
ROUNDS times each, measured from the spawn request to the server answering through the
proxy. Prints medians and the ratio with/without.

    .venv/bin/python bench/spawn_time.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import requests
from reeflab.testing.hub import HubProcess

WITHOUT_REEFLAB_FOR_PLAIN = """
def _plain_without_reeflab(spawner):
    if spawner.user.name == "plain":
        spawner.args = [*spawner.args, '--ServerApp.jpserver_extensions={"reeflab": False}']
c.Spawner.pre_spawn_hook = _plain_without_reeflab
"""


def spawn_once(hub: HubProcess, user: str, token: str, expect_reeflab: bool) -> float:
    start = time.perf_counter()
    url = hub.spawn(user)
    elapsed = time.perf_counter() - start
    info = requests.get(url + "reeflab/api/info", headers={"Authorization": f"token {token}"}, timeout=30)
    if info.ok != expect_reeflab:
        raise SystemExit(f"{user}: reeflab {'missing' if expect_reeflab else 'still loaded'} ({info.status_code})")
    hub.stop_server(user)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"reef": [], "plain": []}
    with tempfile.TemporaryDirectory() as state, HubProcess(state, extra_config=WITHOUT_REEFLAB_FOR_PLAIN) as hub:
        tokens = {}
        for user in times:
            hub.api("POST", f"users/{user}")
            tokens[user] = hub.user_token(user)
        spawn_once(hub, "reef", tokens["reef"], True)  # warm-up: imports and disk caches
        for _ in range(args.rounds):
            for user in times:
                times[user].append(spawn_once(hub, user, tokens[user], user == "reef"))
    med = {user: statistics.median(t) for user, t in times.items()}
    print(f"spawn-to-ready, local mode, {args.rounds} alternating rounds after one warm-up")
    for user, label in (("reef", "with reeflab   "), ("plain", "without reeflab")):
        print(f"  {label} median {med[user]:6.2f} s  runs {', '.join(f'{t:.2f}' for t in times[user])}")
    print(f"  ratio with/without: {med['reef'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
