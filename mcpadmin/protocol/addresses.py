"""Which network addresses an outbound call may reach (the SSRF policy), as pure functions.

``policy.Policy`` applies these twice, for both outbound clients: to the host named in a URL
before anything is sent (literal addresses in every spelling, known metadata names) and to
every address the name resolves to, at the moment the connection is made.
"""

import ipaddress
import re
import socket

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata and credential services: never reachable, whatever the
# private-network setting. AWS/GCP/Azure/OpenStack/Oracle 169.254.169.254 and AWS IPv6
# fd00:ec2::254, GCP IPv6 fd20:ce::254, ECS 169.254.170.2, EKS pod identity 169.254.170.23
# and fd00:ec2::23, Azure WireServer 168.63.129.16, Alibaba 100.100.100.200, Oracle legacy
# 192.0.0.192. The link-local ranges below hold most of them and are refused whole.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254", "fd00:ec2::254", "fd20:ce::254", "169.254.170.2", "169.254.170.23",
        "fd00:ec2::23", "168.63.129.16", "100.100.100.200", "192.0.0.192",
    )
)  # fmt: skip
# Link-local addresses are where clouds put their credential endpoints: never reachable.
ALWAYS_REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
LOOPBACK_NAMES = ("localhost", "localhost.")
METADATA_REFUSAL = "a link-local or cloud metadata address"
LOOPBACK_REFUSAL = "a loopback address"
PRIVATE_REFUSAL = "a private or reserved address"

# IPv6 prefixes that carry an IPv4 address (RFC 6052 §2.2 NAT64): the well-known /96, and the
# local-use /48 (RFC 8215), whose operator may embed the address at any RFC 6052 prefix length.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# RFC 6052 §2.2: where the 32 IPv4 bits sit for each prefix length, as (shift, bits) pieces of
# the 128-bit address (bits 64–71, the "u" octet, never carry any).
_NAT64_LAYOUTS = (
    ((64, 16), (40, 16)),  # /48
    ((64, 8), (32, 24)),  # /56
    ((24, 32),),  # /64
    ((0, 32),),  # /96
)
# RFC 4291 §2.5.5.1 IPv4-compatible addresses (deprecated, still parsed): ::a.b.c.d.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
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
    """The IPv4 address an IPv6 one stands for (mapped ``::ffff:a.b.c.d``, 6to4, NAT64 with
    the address in the last 32 bits)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    for inner in (ip.ipv4_mapped, ip.sixtofour):
        if inner is not None:
            return inner
    if ip in _NAT64_WELL_KNOWN or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def embedded_ipv4s(ip: IP) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address an IPv6 one may stand for: ``embedded_ipv4``, the IPv4-compatible
    ``::a.b.c.d``, and NAT64 at each RFC 6052 layout of the local-use prefix (which one a
    network uses is its operator's choice)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    found = [embedded_ipv4(ip)]
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        found.append(ipaddress.IPv4Address(int(ip)))
    if ip in _NAT64_LOCAL:
        found.extend(ipaddress.IPv4Address(_bits(int(ip), layout)) for layout in _NAT64_LAYOUTS)
    return tuple(a for a in found if a is not None)


def _bits(value: int, layout) -> int:
    """The 32 bits ``layout`` names in ``value``, high piece first."""
    out = 0
    for shift, width in layout:
        out = (out << width) | ((value >> shift) & ((1 << width) - 1))
    return out


def is_metadata(ip: IP) -> bool:
    """Whether ``ip`` is, or stands for, a cloud metadata or credential endpoint, or any
    link-local address (``ALWAYS_REFUSED_NETWORKS``): refused whatever the settings."""
    return any(_always_refused(a) for a in (ip, *embedded_ipv4s(ip)))


def _always_refused(ip: IP) -> bool:
    return ip in METADATA_ADDRESSES or any(
        ip.version == net.version and ip in net for net in ALWAYS_REFUSED_NETWORKS
    )


def is_metadata_name(host: str) -> bool:
    return host.rstrip(".").lower() in METADATA_NAMES


def is_loopback_name(host: str) -> bool:
    name = host.lower()
    return name in LOOPBACK_NAMES or name.rstrip(".").endswith(".localhost")


def is_loopback(ip: IP) -> bool:
    """Whether ``ip`` is a loopback address, or an IPv6 address that stands for one."""
    return (embedded_ipv4(ip) or ip).is_loopback


def refusal(ip: IP) -> str | None:
    """Why a call to ``ip`` is refused when private networks are off, or None when it is a
    public address. Loopback, RFC 1918, link-local, unique-local (fc00::/7), CGNAT
    (100.64/10), multicast, reserved and unspecified addresses are private here; so is an
    IPv6 address that embeds one of them."""
    if is_metadata(ip):
        return METADATA_REFUSAL
    if is_loopback(ip):
        return LOOPBACK_REFUSAL
    inner = embedded_ipv4(ip) or ip
    if (not inner.is_global or inner.is_multicast or inner.is_reserved
            or inner.is_unspecified):  # fmt: skip
        return PRIVATE_REFUSAL
    return None
