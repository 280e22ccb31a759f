"""The seam: private names of opentelemetry.* and prometheus_client appear only in sizewise_otel/fastpath/.

Every module outside ``fastpath/`` is parsed. A violation is an import of a private module or name
from those packages, or a use of one of their private names (``_x``, not dunder) as an attribute
(``obj._x``, ``self._x`` in a class that subclasses one of their classes) or as a ``getattr`` /
``hasattr`` / ``setattr`` / ``delattr`` string. Their private names are read from the installed
sources, so the list follows the installed releases.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import sizewise_otel

PACKAGES = ("opentelemetry", "prometheus_client")
ROOT = Path(sizewise_otel.__file__).parent
SEAM = ROOT / "fastpath"
# Private names the packages define: functions, classes, module globals, attributes they assign
# (on their own objects or, like the contrib instrumentors' markers, on others'), import aliases.
_DEFINED = re.compile(r"(?:\bdef|\bclass)\s+(_\w+)|^\s*(_\w+)\s*[:=][^=]|\.(_\w+)\s*[:=][^=]"
                      r"|\bimport\s+(_\w+)|\bas\s+(_\w+)|,\s*(_\w+)\s*[,)\n]", re.MULTILINE)
# Accesses on sizewise_otel's own objects whose attribute name happens to be private in the SDK too.
OWN_ATTRIBUTES = {
    ("sizewise_otel/errors/tracker.py", "_pid"): "ErrorWriter's own process id (errors/writer.py)",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@cache
def sdk_private_names() -> frozenset[str]:
    """Every private identifier defined or used in the installed opentelemetry / prometheus_client."""
    names: set[str] = set()
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        for location in spec.submodule_search_locations:
            for path in Path(location).rglob("*.py"):
                if path.name.endswith("_pb2.py"):
                    continue
                for groups in _DEFINED.findall(path.read_text("utf-8", "replace")):
                    names.update(n for n in groups if n and _is_private(n))
    return frozenset(names)


def _from_packages(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in PACKAGES  # type: ignore[union-attr]


def violations(source: str, filename: str = "<module>") -> Iterator[str]:
    tree = ast.parse(source, filename)
    private = sdk_private_names()
    imported: set[str] = set()  # local names bound to something from the packages
    others: set[str] = set()  # local names bound to other modules (sys, os, ...)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _from_packages(node.module):
            if any(_is_private(seg) for seg in node.module.split(".")):  # type: ignore[union-attr]
                yield f"{filename}:{node.lineno}: import from private module {node.module}"
            for alias in node.names:
                if _is_private(alias.name):
                    yield f"{filename}:{node.lineno}: import of private {node.module}.{alias.name}"
                imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                local = (alias.asname or alias.name).split(".")[0]
                if _from_packages(alias.name):
                    if any(_is_private(seg) for seg in alias.name.split(".")):
                        yield f"{filename}:{node.lineno}: import of private module {alias.name}"
                    imported.add(local)
                else:
                    others.add(local)
    sdk_classes = {node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                   and any(isinstance(b, (ast.Name, ast.Attribute)) and _root_name(b) in imported
                           for b in node.bases)}
    inside_sdk_class = {id(n) for cls in sdk_classes for n in ast.walk(cls)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr in private:
            owner = node.value
            is_self = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            if _root_name(owner) in others or (filename, node.attr) in OWN_ATTRIBUTES:
                continue
            if not is_self or id(node) in inside_sdk_class:
                yield f"{filename}:{node.lineno}: private attribute {ast.unparse(node)}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and _is_private(name.value) \
                    and name.value in private:
                yield f"{filename}:{node.lineno}: private name {name.value!r} in {node.func.id}()"
        elif isinstance(node, ast.FunctionDef) and id(node) in inside_sdk_class and _is_private(node.name) \
                and node.name in private:
            yield f"{filename}:{node.lineno}: overrides private hook {node.name}"


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _modules_outside_seam() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if SEAM not in p.parents)


def test_no_private_sdk_name_outside_fastpath() -> None:
    found = [v for path in _modules_outside_seam()
             for v in violations(path.read_text(), str(path.relative_to(ROOT.parent)))]
    assert not found, "private SDK / prometheus_client names outside sizewise_otel/fastpath/:\n" + "\n".join(found)


def test_the_scan_sees_every_kind_of_use() -> None:
    """The checker itself: each form it must catch, and what it must leave alone."""
    bad = '''
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.trace.propagation import _SPAN_KEY
import opentelemetry.sdk.metrics._internal.instrument
from opentelemetry.sdk.trace import SpanProcessor

def f(provider, span, reg):
    provider._sdk_config
    getattr(span, "_attributes", None)
    reg._collector_to_names

class P(SpanProcessor):
    def _readable_span(self):
        self._attributes = 1
'''
    found = list(violations(bad))
    assert len(found) == 9, found
    ok = '''
from opentelemetry import trace

class Mine:
    def __init__(self):
        self._attributes = {}

    def f(self, span):
        return trace.get_current_span(), self._attributes, span.__class__
'''
    assert list(violations(ok)) == []


def test_fastpath_itself_is_where_the_private_names_are() -> None:
    """The seam is not empty by accident: the scan finds private names inside fastpath/."""
    inside = [v for path in sorted(SEAM.rglob("*.py")) for v in violations(path.read_text(), path.name)]
    assert len(inside) > 20, inside


def test_fastapis_private_telemetry_switches_are_read_in_the_seam_only() -> None:
    """FastAPI's native-telemetry attributes (``app._telemetry``, ``app._native_telemetry``) are private
    too: only sizewise_otel/fastpath/fastapi_native.py names them."""
    names = ('"_telemetry"', '"_native_telemetry"', "._telemetry", "._native_telemetry")
    found = [str(p.relative_to(ROOT.parent)) for p in _modules_outside_seam()
             if any(n in p.read_text() for n in names)]
    assert found == []
    assert all(n in (SEAM / "fastapi_native.py").read_text() for n in names[:2])
