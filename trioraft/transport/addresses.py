"""Addresses as people write them: `host:port`, or `[host]:port` for an IPv6 host.

`parse_address` checks one and gives a `HostPort`, whose `str()` writes it back the same
way. The transport connects to a plain `(host, port)` pair (`base.Address`).
"""

from __future__ import annotations

import ipaddress
import json
import re

import attrs

#: the hosts a node may listen on instead of its advertised host: every local interface
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


@attrs.frozen(slots=True)
class HostPort:
    """A TCP address; written `host:port`, or `[host]:port` for an IPv6 host."""

    #: a host name or IP address, without brackets
    host: str
    #: the TCP port, 1..65535
    port: int

    @property
    def is_wildcard(self) -> bool:
        """Whether the host means every local interface."""
        return self.host in WILDCARD_HOSTS

    @property
    def is_ip(self) -> bool:
        """Whether the host is an IP address (not a name)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def quoted(text: str) -> str:
    """`text` as an error message shows it: in double quotes, a long one shortened."""
    return json.dumps(text if len(text) <= 40 else text[:37] + "...")


def parse_address(text: str) -> HostPort:
    """Parse `host:port` or `[ipv6]:port`; raise ValueError saying what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f'expected "[host]:port", got {quoted(text)}')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{quoted(host)} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f'expected "host:port", got {quoted(text)}')
        if ":" in host:
            raise ValueError(f'write an IPv6 address as "[addr]:port", got {quoted(text)}')
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{quoted(host)} is not a host name or IP address")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {quoted(port)}")
    return HostPort(host, int(port))
