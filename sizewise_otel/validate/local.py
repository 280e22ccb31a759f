"""What only the machine running the service knows: its bind address and its configuration.

Used only when ``--url`` is a loopback address (the service runs here). In order of preference:

1. the socket table (``/proc/net/tcp*`` via psutil): which addresses listen on the URL's port;
2. the environment of the process that owns that socket (readable for one's own processes, or as
   root): the service's real settings;
3. failing 2, this process's own environment (``Settings()``), labelled as such in every result.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizewise_otel.settings import Settings


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(address: str) -> bool:
    return address in ("0.0.0.0", "::", "")


class _Snapshot(Settings):
    """Settings read from a given mapping only (never from this process's environment)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any) -> Any:
        return (init_settings,)


@dataclass
class ServiceView:
    listen_addresses: list[str] = field(default_factory=list)  # empty: unknown
    pid: int | None = None
    settings: Settings | None = None
    source: str = "not available (the service is not on this machine)"
    api_keys: dict[str, str] | None = None  # key -> role; None: could not be read
    notes: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.settings is not None

    @property
    def metrics_token(self) -> str:
        return self.settings.sizewise_metrics_token if self.settings else ""


def listeners(port: int) -> tuple[list[str], int | None]:
    """Addresses listening on ``port`` on this machine, and the owning pid when visible."""
    import psutil

    addresses: list[str] = []
    pid: int | None = None
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            addresses.append(conn.laddr.ip)
            pid = pid or conn.pid
    return sorted(set(addresses)), pid


def settings_from_env(env: dict[str, str], cwd: str | None = None) -> Settings:
    fields = set(Settings.model_fields)
    values = {k.lower(): v for k, v in env.items() if k.lower() in fields}
    keys_file = values.get("sizewise_api_keys_file")
    if keys_file and cwd and not Path(keys_file).is_absolute():
        values["sizewise_api_keys_file"] = str(Path(cwd) / keys_file)
    return _Snapshot(**values)


def service_view(port: int, loopback: bool) -> ServiceView:
    if not loopback:
        return ServiceView()
    view = ServiceView(source="this process's environment (the service's own was not readable)")
    try:
        view.listen_addresses, view.pid = listeners(port)
    except Exception as exc:  # psutil missing or the socket table unreadable
        view.notes.append(f"socket table unreadable ({type(exc).__name__})")
    settings: Settings | None = None
    if view.pid:
        try:
            import psutil

            proc = psutil.Process(view.pid)
            settings = settings_from_env(proc.environ(), proc.cwd())
            view.source = f"the environment of the service process (pid {view.pid})"
        except Exception as exc:
            view.notes.append(f"environment of pid {view.pid} unreadable ({type(exc).__name__})")
    if settings is None:
        try:
            settings = Settings()
        except Exception as exc:
            view.notes.append(f"local settings invalid ({type(exc).__name__})")
            view.source = "not available"
    view.settings = settings
    if settings is not None:
        try:
            view.api_keys = settings.api_keys()
        except Exception as exc:
            view.notes.append(f"API keys unreadable ({type(exc).__name__})")
    return view
