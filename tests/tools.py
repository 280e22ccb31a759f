"""Where the tests find their tools: next to the running interpreter, or built under build/tools.

A fresh clone runs ``make test`` with nothing on PATH but the system's, so nothing here asks PATH for a
tool the project installs itself: console scripts of the test venv sit beside ``sys.executable``, and
the servers built from the Go module proxy sit under ``build/tools/<name>-<version>/`` (made by
``scripts/build-servers.sh`` at the versions compose.yaml pins).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build-servers.sh"


def venv_tool(name: str) -> str | None:
    """A console script installed into the interpreter's environment (``.venv/bin/NAME``)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() and os.access(path, os.X_OK) else None


def pinned_version(tool: str) -> str:
    """The version scripts/build-servers.sh builds for prometheus, alertmanager or kustomize."""
    m = re.search(rf"^{tool.upper()}_VERSION=(\S+)$", BUILD_SCRIPT.read_text(), re.M)
    if not m:
        raise LookupError(f"{BUILD_SCRIPT.name} pins no {tool} version")
    return m.group(1)


_FAMILY = {"prometheus": "prometheus", "promtool": "prometheus", "alertmanager": "alertmanager",
           "amtool": "alertmanager", "kustomize": "kustomize", "victoria-metrics": "victoriametrics"}


def built_tool(name: str) -> str | None:
    """A binary scripts/build-servers.sh built (prometheus, promtool, alertmanager, amtool, kustomize,
    victoria-metrics)."""
    path = ROOT / "build" / "tools" / f"{name}-{pinned_version(_FAMILY[name])}" / name
    return str(path) if path.exists() else None
