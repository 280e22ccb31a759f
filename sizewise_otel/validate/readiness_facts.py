"""Two facts several checks need: is access open (no API keys), and is the service exposed
beyond this machine. Each is observed, never assumed; ``None`` means it could not be told."""

from __future__ import annotations

from sizewise_otel.validate.context import Context
from sizewise_otel.validate.local import is_loopback_host, is_wildcard


def open_access(ctx: Context) -> bool | None:
    """True when an anonymous read of the error API succeeds (the service has no keys)."""
    if "open_access" not in ctx.cache:
        resp = ctx.get("/errors/summary", auth=False)
        ctx.cache["open_access"] = (True if resp.status_code == 200 else
                                    False if resp.status_code in (401, 403) else None)
    return ctx.cache["open_access"]


def exposed(ctx: Context) -> bool | None:
    """True when other machines can reach the port: a non-loopback URL, or (for a loopback URL) a
    listener on a wildcard or non-loopback address in this machine's socket table."""
    if not ctx.loopback:
        return True
    addresses = ctx.view.listen_addresses
    if not addresses:
        return None
    return any(is_wildcard(a) or not is_loopback_host(a) for a in addresses)
