"""FastAPI's native OpenTelemetry (0.142+): its per-app switches are private attributes of the app
(``app._telemetry``, a dict of switches and providers; ``app._native_telemetry``, what records).
Read here only, so a FastAPI release that moves them changes one module; absent, both answer None
and SizeWise leaves the app's native telemetry alone (nothing to switch off on older FastAPI)."""

from __future__ import annotations

from typing import Any


def native_telemetry_config(app: Any) -> dict[str, Any] | None:
    """The app's mutable native-telemetry switches (``tracing``, ``metrics``, ``logs``, ``*_provider``)."""
    config = getattr(app, "_telemetry", None)
    return config if isinstance(config, dict) else None


def native_telemetry_enabled(app: Any) -> bool | None:
    """Whether the native layer would record this app's requests; None when this FastAPI has none."""
    native = getattr(app, "_native_telemetry", None)
    if native is None or native_telemetry_config(app) is None:
        return None
    try:
        return bool(native.enabled())
    except Exception:  # a FastAPI release that changed it: assume it records (switching it off is harmless)
        return True
