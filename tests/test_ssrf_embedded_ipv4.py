"""An IPv6 address that carries an IPv4 one is judged by the IPv4 host it reaches."""

from __future__ import annotations

import ipaddress

import pytest

from openmvsep.net import is_public_address


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("2002:0a00:0001::1", False),  # 6to4 of 10.0.0.1
        ("2002:7f00:0001::1", False),  # 6to4 of 127.0.0.1
        ("2002:c0a8:0101::1", False),  # 6to4 of 192.168.1.1
        ("2002:0808:0808::1", True),  # 6to4 of 8.8.8.8
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1 (inverted bits)
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("::10.0.0.1", False),  # IPv4-compatible
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("::1", False),
        ("2606:4700:4700::1111", True),
        ("8.8.8.8", True),
    ],
)
def test_embedded_ipv4_is_checked(address: str, public: bool):
    assert is_public_address(ipaddress.ip_address(address)) is public
