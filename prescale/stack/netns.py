"""A private network namespace for the local control plane.

The aggregator refuses loopback and link-local endpoints, so the adapter must listen on a
routable address. We never use a real network for that: the calling process moves itself into
a new, empty network namespace, with loopback and one veth pair whose both ends stay inside,
carrying a private address that exists nowhere else. Every process it starts afterwards
inherits the namespace, and the namespace disappears with the last of them.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Final

from prescale.stack.errors import StackError

CLONE_NEWNET: Final = 0x40000000
DEFAULT_CIDR: Final = "10.200.0.1/24"
IFACE: Final = "prescale0"
PEER: Final = "prescale1"


@dataclass(frozen=True)
class Netns:
    """The namespace this process now lives in."""

    address: str
    """The private IPv4 address on the veth interface (no prefix length)."""
    inode: int
    """Identity of the namespace (``/proc/self/ns/net`` inode), to tell it apart from the host's."""


def current_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"network namespace set-up: 'ip {' '.join(args)}' failed: {done.stderr.strip()}")


def enter_private(cidr: str = DEFAULT_CIDR) -> Netns:
    """Move this process into a new network namespace and give it ``cidr`` on a veth pair.

    Must run before any thread starts: ``unshare`` moves only the calling thread, and threads
    created later inherit its namespace.
    """
    if threading.active_count() != 1:
        raise StackError("enter the private network namespace before starting any thread")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise StackError(
            f"cannot create a network namespace: {errno_mod.errorcode.get(err, err)} "
            f"({os.strerror(err)}); this needs root or CAP_SYS_ADMIN"
        )
    _ip("link", "set", "lo", "up")
    _ip("link", "add", IFACE, "type", "veth", "peer", "name", PEER)
    _ip("addr", "add", cidr, "dev", IFACE)
    _ip("link", "set", IFACE, "up")
    _ip("link", "set", PEER, "up")
    # A default route lets components that derive their address from it start; it points
    # into the namespace's own interface, so nothing leaves it.
    _ip("route", "add", "default", "dev", IFACE)
    return Netns(address=cidr.split("/", 1)[0], inode=current_inode())
