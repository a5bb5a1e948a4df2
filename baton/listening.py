"""Where a server of baton's listens (the exporter, the status pages): the address family a
host resolves to, and one line naming the address when it cannot be had, not a traceback."""

from __future__ import annotations

import errno
import socket

from baton.errors import BatonError

HINTS = {errno.EADDRINUSE: " (another process has it: choose another --port)",
         errno.EADDRNOTAVAIL: " (not an address of this machine: check --host)",
         errno.EACCES: " (ports below 1024 need privileges: choose another --port)"}


def family_of(what: str, host: str, port: int) -> socket.AddressFamily:
    """IPv4 or IPv6, as ``host`` resolves; BatonError when it is no host at all."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BatonError(f"{what} --host {host}: not a host name or address ({reason})"
                         ) from None


def cannot_listen(what: str, host: str, port: int, exc: OSError) -> BatonError:
    """The error for an address that could not be bound, with what to do about it."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    hint = HINTS.get(exc.errno or 0, "")
    return BatonError(f"{what} cannot listen on {where}: {exc.strerror or exc}{hint}")
