"""The address of a browser that calls the service itself (an unsubscribe link), behind
the proxies IDENTITY_TRUSTED_PROXIES names: what the consent ledger keeps of it."""

import ipaddress

from identity.config import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def browser_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str | None:
    """The client's address: the connection's own (`peer`), unless that is a trusted
    proxy; then X-Forwarded-For read from the right, each trusted proxy adding the one
    that connected to it, up to the first address that is not a trusted proxy. What is
    left of it, anyone could have written (a browser may send the header itself), so it
    is never read: a spoofed left-most entry changes nothing.

    An entry that names no address (garbage, `unknown`, an obfuscated name) ends the
    walk: a trusted proxy wrote it, and nothing to its left can be vouched for, so the
    nearest address that can be, that proxy's, is the answer. With every entry a trusted
    proxy, the left-most of them is. None when the connection has no IP address (a Unix
    socket)."""
    nearest = _address(peer or "")
    if nearest is None or not _among(nearest, trusted):
        return None if nearest is None else str(nearest)
    for entry in reversed((forwarded_for or "").split(",")):
        hop = _address(entry)
        if hop is None:
            break
        if not _among(hop, trusted):
            return str(hop)
        nearest = hop
    return str(nearest)


def _address(text: str) -> Address | None:
    """An entry as proxies write one: an address, a bracketed IPv6 address, either with
    a port (`[2001:db8::7]:443`, `192.0.2.7:51000`); an IPv4 address written as IPv6 as
    the IPv4 address it is. None for anything else, and for an address with a %zone (an
    interface of the proxy's machine, which PostgreSQL's inet does not take either)."""
    text, port = text.strip(), ""
    if text.startswith("["):
        text, closed, port = text[1:].partition("]")
        if not closed or (port and not port.startswith(":")):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
    if port and not port.removeprefix(":").isdigit():
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if getattr(address, "scope_id", None):
        return None
    return getattr(address, "ipv4_mapped", None) or address


def _among(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)
