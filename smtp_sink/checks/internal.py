"""Which addresses a request made on a message's behalf must not reach (server-side request
forgery): Mailpit's list (``internal/tools/net.go``), IPv4 addresses hidden in IPv6 forms included."""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_BLOCKED_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
    "fec0::/10",  # deprecated site-local (RFC 3879)
    "2001:db8::/32",  # documentation (RFC 3849)
))
_NAT64 = tuple(ipaddress.ip_network(net) for net in ("64:ff9b::/96", "64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def is_internal(address: str | Address) -> bool:
    """Loopback, private, link-local, multicast, unspecified, reserved, CGNAT, site-local or
    documentation; for IPv6, also when the IPv4 address it carries (mapped, NAT64, 6to4, Teredo,
    IPv4-compatible, ISATAP) is one of those. A text that is no address counts as internal."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return True
    if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_unspecified
            or ip.is_reserved or any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version)):
        return True
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return embedded is not None and is_internal(embedded)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is of a form that carries one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    last32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in _NAT64) or ip in _IPV4_COMPATIBLE:
        return last32
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if (int(ip) >> 32) & 0xFFFF == 0x5EFE:  # ISATAP: an interface id of ::5efe:<ipv4>
        return last32
    return None
