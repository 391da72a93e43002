"""Which addresses a user-given link may reach: the server-side request forgery rule.

A link from an API user must not make this server talk to itself, its local network or a cloud
metadata endpoint. Only globally routable addresses pass, and a host passes only when every
address it resolves to does: one public answer must not cover for a private one.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from openmvsep.net.errors import RemoteFetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: IPAddress) -> bool:
    """True for addresses that are fine to fetch from on behalf of a user (globally routable).

    An IPv6 address that carries an IPv4 one reaches that IPv4 host through a relay or translator, so the
    embedded address must pass too: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), 6to4
    (2002:AABB:CCDD::/16) and Teredo (2001::/32, the client's address inverted in the last 32 bits)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 itself
    elif isinstance(address, ipaddress.IPv6Address):
        embedded = [address.sixtofour, *(address.teredo or ())]
        if address.packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (not :: or ::1, judged below)
            embedded.append(ipaddress.IPv4Address(address.packed[12:]))
        if any(inner is not None and not is_public_address(inner) for inner in embedded):
            return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # also catches shared space such as 100.64.0.0/10
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses the system resolver gives for host, in its preferred order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RemoteFetchError(f"could not resolve the host {host}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses may be contacted, how names resolve, and how TLS is verified.

    fetch() builds the production policy; tests use other resolvers/checks/CA files.
    """

    address_allowed: Callable[[IPAddress], bool] = is_public_address
    resolve: Callable[[str, int], list[IPAddress]] = resolve_host
    verify: ssl.SSLContext | bool = True


def default_policy(allow_private: bool) -> NetworkPolicy:
    """The production policy; allow_private is for operators whose inputs live on their own network."""
    return NetworkPolicy(address_allowed=(lambda _address: True) if allow_private else is_public_address)
