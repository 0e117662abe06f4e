"""Which network addresses an outbound call may reach (the SSRF policy), as pure functions.

``Http`` applies these twice: to the host named in a URL before anything is sent (literal
addresses in every spelling, known metadata names) and to every address the name resolves
to, at the moment the connection is made (see ``http._connect``).
"""

import ipaddress
import re
import socket

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata services hand out credentials: never reachable, whatever the
# private-network setting (AWS/GCP/Azure/OpenStack 169.254.169.254, AWS IPv6, ECS, Alibaba).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
LOOPBACK_NAMES = ("localhost", "localhost.")

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64, well-known
# and local-use prefixes).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# inet_aton's legacy spellings: 1 to 4 parts, each decimal, 0x-hex or 0-octal (127.1,
# 2130706433, 0x7f000001, 0177.0.0.1).
_LEGACY_IPV4 = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+)){0,3}\.?$")


def parse_ip(host: str) -> IP | None:
    """The address ``host`` spells, in any form a resolver would accept as a literal
    (``[::1]``, ``fe80::1%eth0``, ``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``),
    or None for a name."""
    text = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
        except OSError:
            return None
    return None


def embedded_ipv4(ip: IP) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped ``::ffff:a.b.c.d``, NAT64, 6to4)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    for inner in (ip.ipv4_mapped, ip.sixtofour):
        if inner is not None:
            return inner
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_metadata(ip: IP) -> bool:
    return ip in METADATA_ADDRESSES or embedded_ipv4(ip) in METADATA_ADDRESSES


def is_metadata_name(host: str) -> bool:
    return host.rstrip(".").lower() in METADATA_NAMES


def is_loopback_name(host: str) -> bool:
    name = host.lower()
    return name in LOOPBACK_NAMES or name.rstrip(".").endswith(".localhost")


def refusal(ip: IP) -> str | None:
    """Why a call to ``ip`` is refused when private networks are off, or None when it is a
    public address. Loopback, RFC 1918, link-local, unique-local (fc00::/7), CGNAT
    (100.64/10), multicast, reserved and unspecified addresses are private here; so is an
    IPv6 address that embeds one of them."""
    if is_metadata(ip):
        return "a cloud metadata address"
    inner = embedded_ipv4(ip) or ip
    if inner.is_loopback:
        return "a loopback address"
    if inner.is_link_local:
        return "a link-local address"
    if (not inner.is_global or inner.is_multicast or inner.is_reserved
            or inner.is_unspecified):  # fmt: skip
        return "a private or reserved address"
    return None
