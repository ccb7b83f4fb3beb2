"""Addresses as they may be shown where their owner is not known to be looking: an
unsubscribe page, a log line."""


def mask_address(address: str) -> str:
    """a***@e***.com: enough to tell addresses apart, not enough to know whose."""
    local, _, domain = address.rpartition("@")
    name, dot, top = domain.rpartition(".")
    shown_domain = f"{name[:1]}***{dot}{top}" if dot else f"{domain[:1]}***"
    return f"{local[:1]}***@{shown_domain}"
