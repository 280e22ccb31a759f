"""compose.yaml publishes every port on the host's loopback, as docs/full-stack.md "What is reachable
from where" lists them; only the user-facing app and Grafana ports take PUBLIC_BIND_ADDRESS (default
127.0.0.1), so opening them to other machines is a deliberate setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests import stack

LOOPBACK = "127.0.0.1"
PUBLIC = "${PUBLIC_BIND_ADDRESS:-127.0.0.1}"
# The user-facing ones: the API and the two Grafanas (service, container port).
USER_FACING = {("app", 8000), ("grafana", 3000), ("grafana-ha", 3000)}
DOC = stack.ROOT / "docs" / "full-stack.md"
_LEADING_VAR = re.compile(r"^(\$\{[^}]*\}):(.*)$")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@dataclass(frozen=True)
class Published:
    service: str
    bind: str  # as written; "" = every interface
    host_port: int | None
    container_port: int
    profile: str


def parse(service: str, entry: Any, profile: str = "default") -> Published:
    """One `ports:` entry, short ("[ip:][host:]container[/proto]") or long syntax."""
    if isinstance(entry, dict):
        host = entry.get("published")
        return Published(service, entry.get("host_ip", ""), int(host) if host else None,
                         int(entry["target"]), profile)
    text = str(entry).split("/")[0]
    m = _LEADING_VAR.match(text)
    bind, rest = (m.group(1), m.group(2).split(":")) if m else ("", text.split(":"))
    if not m and len(rest) == 3:
        bind, rest = rest[0], rest[1:]
    host = int(rest[0]) if len(rest) == 2 else None
    return Published(service, bind, host, int(rest[-1]), profile)


def resolved(bind: str) -> str:
    """The address a plain `docker compose up` binds (no variable set)."""
    return _INTERPOLATION.sub(lambda mm: mm.group(2) or "", bind)


def published(path: Any = stack.COMPOSE) -> list[Published]:
    services = yaml.safe_load(path.read_text())["services"]
    return [parse(name, entry, (svc.get("profiles") or ["default"])[0])
            for name, svc in services.items() for entry in svc.get("ports", [])]


ALL = published() + published(stack.COMPOSE_OTLP_DIRECT)


def test_compose_publishes_the_ports_the_docs_name() -> None:
    assert {(p.service, p.container_port) for p in ALL} >= USER_FACING | {
        ("prometheus", 9090), ("alertmanager", 9093), ("jaeger", 16686), ("otel-collector", 4317),
        ("otel-collector", 4318), ("otel-collector", 13133)}


@pytest.mark.parametrize("port", ALL, ids=lambda p: f"{p.service}:{p.container_port}")
def test_every_published_port_binds_loopback(port: Published) -> None:
    assert port.host_port is not None, "a random host port cannot be documented"
    assert resolved(port.bind) == LOOPBACK, f"{port.service} binds {port.bind or 'every interface'}"
    # Only the user-facing ones can be opened, and only through the one documented variable.
    expected = PUBLIC if (port.service, port.container_port) in USER_FACING else LOOPBACK
    assert port.bind == expected


def test_the_parser_sees_every_interface() -> None:
    assert resolved(parse("x", "9090:9090").bind) == ""
    assert resolved(parse("x", "0.0.0.0:9090:9090").bind) == "0.0.0.0"
    assert resolved(parse("x", "${BIND:-0.0.0.0}:9090:9090").bind) == "0.0.0.0"
    assert resolved(parse("x", {"target": 9090, "published": "9090"}).bind) == ""
    assert parse("x", "127.0.0.1:9091:9090/tcp") == Published("x", LOOPBACK, 9091, 9090, "default")
    assert parse("x", "9090").host_port is None


def doc_rows() -> set[Published]:
    section = DOC.read_text().split("## What is reachable from where", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("published on", "---"):
            continue
        bind, _, host = cells[0].rpartition(":")
        rows.add(Published(cells[1], bind, int(host), int(cells[2]), cells[3]))
    return rows


def test_the_docs_table_is_what_compose_publishes() -> None:
    rows = doc_rows()
    assert len(rows) >= 10
    assert rows == set(ALL), f"only in docs: {rows - set(ALL)}; only in compose: {set(ALL) - rows}"
