"""Cloud credential endpoints and every link-local address are refused whatever the
private-network setting, in every form that reaches them: IPv4, IPv6, and IPv6 addresses that
stand for an IPv4 one (mapped, NAT64, 6to4, IPv4-compatible). Checked before any lookup, and
again on the address a name resolves to, by both clients (``outbound``)."""

import socket

import pytest

from mcpadmin.protocol import addresses
from mcpadmin.protocol.http import Blocked

CLOUD_ENDPOINTS = [
    "169.254.169.254", "[fd00:ec2::254]", "[fd20:ce::254]", "169.254.170.2", "169.254.170.23",
    "[fd00:ec2::23]", "168.63.129.16", "100.100.100.200",
]  # fmt: skip
LINK_LOCAL = ["169.254.0.1", "169.254.255.254", "[fe80::1]", "[febf::1]", "[fe80::a9fe:a9fe]"]
DISGUISED = [
    "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b::169.254.170.23]", "[2002:a9fe:a9fe::]", "[2002:a83f:8110::]",
    "[::ffff:168.63.129.16]", "[64:ff9b::a83f:8110]", "[::a9fe:a9fe]",
    "[64:ff9b:1::a9fe:a9fe]", "[64:ff9b:1:a9fe:a9:fe00::]", "[64:ff9b:1:a9:fea9:fe00::]",
    "[64:ff9b:1:0:a9:fea9:fe00:0]", "[::ffff:169.254.1.1]", "2852039190",
]  # fmt: skip


@pytest.fixture
def lookups(monkeypatch):
    """Every name looked up; nothing resolves."""
    seen = []

    def getaddrinfo(host, *args, **kwargs):
        seen.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


@pytest.mark.parametrize("host", CLOUD_ENDPOINTS + LINK_LOCAL + DISGUISED)
@pytest.mark.parametrize("allow_private", [True, False])
def test_cloud_and_link_local_addresses_are_refused_whatever_the_setting(
    outbound, host, allow_private, lookups
):
    with pytest.raises(Blocked, match="never go there"):
        outbound(allow_private=allow_private).get(f"http://{host}/latest/meta-data/")
    assert lookups == []


@pytest.mark.parametrize("host", ["169.254.169.254", "fd20:ce::254", "168.63.129.16"])
def test_an_exempted_address_cannot_exempt_a_cloud_endpoint(outbound, host, lookups):
    http = outbound(allow_private=True, allow_addresses=frozenset({(host, 80)}))
    with pytest.raises(Blocked, match="never go there"):
        http.get(f"http://{'[' + host + ']' if ':' in host else host}/")


@pytest.mark.parametrize("address", ["169.254.170.23", "fd00:ec2::23", "fe80::1", "168.63.129.16"])
def test_a_name_resolving_to_a_cloud_endpoint_is_refused_with_private_networks_allowed(
    outbound, address, monkeypatch
):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def getaddrinfo(host, port, *args, **kwargs):
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(Blocked, match=f"{address}, a link-local or cloud metadata address"):
        outbound(allow_private=True).get("http://innocent.example.com/")


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "127.0.0.1", "::1", "fd12:3456::1", "64:ff9b::a00:1", "100.64.0.1"]
)
def test_other_private_addresses_stay_reachable_when_private_networks_are_allowed(address):
    assert not addresses.is_metadata(addresses.parse_ip(address))
