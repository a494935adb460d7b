"""An exposed service inside its sandbox: `python -m reeflab.oscar_engine.bridge`, run by the engine (exposed.py).

It reads one JSON line on stdin, {"fd", "port", "cwd", "script" | "command"}, starts the service's program
(its script with /bin/sh, as OSCAR's container runs it, or the given command) in `cwd` and relays each connection made
to the Unix socket it inherited as `fd` to 127.0.0.1:`port`, where the program listens. The sandbox has a
network namespace of its own, so that port is reachable from nowhere else; the socket lies in a 0700
folder of the engine, which proxies /system/services/<name>/exposed/ to it. The bridge exits with the
program (its status), and stops the program when the engine stops it (SIGTERM) or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile

from .worker import die_with_parent

CHUNK = 2**16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def relay_to_port(port: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    """One connection (from the engine, or into a job's private network) to a port of the loopback (IPv4, else
    IPv6)."""
    upstream = None
    for host in ("127.0.0.1", "::1"):
        with contextlib.suppress(OSError):
            upstream = await asyncio.open_connection(host, port)
            break
    if upstream is None:  # not listening (yet): the engine answers 502 or waits for readiness
        client_writer.close()
        return
    reader, writer = upstream
    try:
        await asyncio.gather(_pump(client_reader, writer), _pump(reader, client_writer))
    finally:
        for end in (writer, client_writer):
            end.close()


async def serve(spec: dict) -> int:
    listener = socket.socket(fileno=int(spec["fd"]))
    if spec.get("command"):
        program = [str(part) for part in spec["command"]]
    else:
        handle, path = tempfile.mkstemp(prefix="reeflab-exposed-", suffix=".sh")  # the sandbox's private /tmp
        with os.fdopen(handle, "w") as script:
            script.write(spec["script"])
        program = ["/bin/sh", path]
    process = await asyncio.create_subprocess_exec(*program, stdin=asyncio.subprocess.DEVNULL, cwd=spec.get("cwd"))
    port = int(spec["port"])
    server = await asyncio.start_unix_server(lambda r, w: relay_to_port(port, r, w), sock=listener)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, process.terminate)
    status = await process.wait()
    server.close()
    print(f"ReefLab: the exposed service's program exited with status {status}", file=sys.stderr, flush=True)
    return status


def main() -> None:
    die_with_parent()
    spec = json.loads(sys.stdin.readline())
    sys.stdin.close()
    status = asyncio.run(serve(spec))
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
