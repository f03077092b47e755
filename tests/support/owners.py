"""Which process holds the server side of a TCP connection (Linux ``/proc``): the tests of
``serve --workers`` check that connections really land on different worker processes."""

from __future__ import annotations

import contextlib
import os
import re
import socket


def _server_inode(sock: socket.socket) -> str:
    """The inode of the server's socket of the connection ``sock`` (the client's end) made."""
    client_port, server_port = sock.getsockname()[1], sock.getpeername()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
                if local == server_port and remote == client_port:
                    return fields[9]
    raise AssertionError(f"no server socket for the connection from port {client_port}")


def owner(sock: socket.socket, pids: list[int]) -> int:
    """The one of ``pids`` that holds the accepted socket of ``sock``'s connection."""
    target = f"socket:[{_server_inode(sock)}]"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
    raise AssertionError(f"no process of {pids} holds {target}")


def worker_pids(log: str) -> list[int]:
    """The worker pids the parent logged last ("SMTP in N worker processes (pids ...)")."""
    found = re.findall(r"worker processes \(pids ([\d ]+)\)", log)
    assert found, log
    return [int(pid) for pid in found[-1].split()]


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except FileNotFoundError:
        return []
