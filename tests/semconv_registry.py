"""The semantic conventions as the installed ``opentelemetry-semantic-conventions`` package ships them.

Every registered metric and attribute is a module constant (``HTTP_ROUTE: Final = "http.route"``)
followed by a string that documents it: ``Deprecated: ...`` for a retired name, ``Instrument: X`` and
``Unit: Y`` for a metric. Those strings are not attached to anything at run time, so the modules'
source is parsed (ast) rather than imported. Stable modules win over incubating ones for a name both
define. Used by the conformance test (tests/integration/test_semconv_conformance.py).
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGES = (
    ("opentelemetry.semconv.attributes", "attribute", True),
    ("opentelemetry.semconv.metrics", "metric", True),
    ("opentelemetry.semconv._incubating.attributes", "attribute", False),
    ("opentelemetry.semconv._incubating.metrics", "metric", False),
)


@dataclass(frozen=True)
class Entry:
    name: str
    stable: bool
    deprecated: str | None = None  # the package's "Deprecated: ..." text
    instrument: str | None = None  # counter, updowncounter, histogram, gauge (metrics only)
    unit: str | None = None
    template: bool = False  # an attribute family: ``http.request.header.<key>``


@dataclass(frozen=True)
class Registry:
    version: str
    metrics: dict[str, Entry]
    attributes: dict[str, Entry]

    def attribute(self, key: str) -> Entry | None:
        """The registered attribute ``key`` is, directly or as a member of a template family."""
        if key in self.attributes:
            return self.attributes[key]
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            entry = self.attributes.get(".".join(parts[:cut]))
            if entry is not None and entry.template:
                return entry
        return None


def _field(doc: str, label: str) -> str | None:
    found = re.search(rf"^{label}: *(.+)$", doc, re.MULTILINE)
    return found.group(1).strip() if found else None


def _entries(source: str, stable: bool) -> list[Entry]:
    body = ast.parse(source).body
    out = []
    for stmt, nxt in zip(body, [*body[1:], None], strict=True):
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else \
            stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        value = stmt.value if isinstance(stmt, ast.AnnAssign | ast.Assign) else None
        if not (isinstance(target, ast.Name) and target.id.isupper() and isinstance(value, ast.Constant)
                and isinstance(value.value, str)):
            continue
        doc = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
            and isinstance(nxt.value.value, str) else ""
        out.append(Entry(value.value, stable, _field(doc, "Deprecated"), _field(doc, "Instrument"),
                         _field(doc, "Unit"), target.id.endswith("_TEMPLATE")))
    return out


@functools.cache
def registry() -> Registry:
    found: dict[str, dict[str, Entry]] = {"metric": {}, "attribute": {}}
    for package, what, stable in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for info in pkgutil.iter_modules(spec.submodule_search_locations):
            path = Path(next(iter(spec.submodule_search_locations))) / f"{info.name}.py"
            for entry in _entries(path.read_text(encoding="utf-8"), stable):
                found[what].setdefault(entry.name, entry)  # stable packages come first
    version = importlib.import_module("opentelemetry.semconv.version").__version__
    return Registry(version, found["metric"], found["attribute"])
