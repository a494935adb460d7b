"""`python -m reeflab.training.superlink_guard <flower-superlink arguments>`: Flower's SuperLink with the rule that
open-source Flower lacks on a machine several users share. Its one HTTP port serves the Fleet API (what SuperNodes
call, each request signed with a registered key), the Control API (start, stop and list runs, upload an app: code
the ServerApp then runs under the SuperLink's account) and the runtime API (the ServerApp's own). Here only the
Fleet API and the health check answer anyone; the others answer only connections made by processes of the
SuperLink's own account on this machine (the socket's owner, read from /proc/net/tcp*), so another user on the
machine cannot run code as the federation's owner, read their app or stop their runs.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

OPEN_PATHS = ("/v1/fleet/", "/health")
ESTABLISHED = "01"


def _address(field: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """An address of /proc/net/tcp[6] ('0100007F:9C40': 32-bit words in host (little-endian) order)."""
    host, port = field.split(":")
    raw = bytes.fromhex(host)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(packed), int(port, 16)


def socket_owner(host: str, port: int) -> int | None:
    """The uid of the process side of the connected TCP socket bound to (host, port) on this machine, if any."""
    wanted = ipaddress.ip_address(host)
    if isinstance(wanted, ipaddress.IPv6Address) and wanted.ipv4_mapped:
        wanted = wanted.ipv4_mapped
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[3] != ESTABLISHED:
                        continue
                    address, bound = _address(fields[1])
                    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                        address = address.ipv4_mapped
                    if bound == port and address == wanted:
                        return int(fields[7])
        except FileNotFoundError:
            continue
    return None


class OwnerOnly:
    """ASGI middleware: every path but the open ones needs a local connection of this process's account."""

    def __init__(self, app: Any):
        self.app = app
        self.uid = os.getuid()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(OPEN_PATHS) and not self._own(scope):
            body = b'{"detail": "only the federation\'s owner may use this API of its SuperLink"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _own(self, scope: dict) -> bool:
        client = scope.get("client")
        return client is not None and socket_owner(client[0], client[1]) == self.uid


def main() -> int:
    import uvicorn
    from flwr.superlink.cli import flower_superlink

    run = uvicorn.run

    def guarded(app: Any, *args: Any, **kwargs: Any) -> Any:
        return run(OwnerOnly(app), *args, **kwargs)

    uvicorn.run = guarded  # flower_superlink serves its app with uvicorn.run(app=...)
    sys.argv = ["flower-superlink", *sys.argv[1:]]
    return flower_superlink()


if __name__ == "__main__":
    sys.exit(main())
