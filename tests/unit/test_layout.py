"""The package layout shows the architecture (issue 16): few top-level modules, and every folder
says what it holds."""

from __future__ import annotations

import ast
from pathlib import Path

import sizewise_otel

ROOT = Path(sizewise_otel.__file__).parent
MAX_TOP_LEVEL = 14


def test_at_most_14_top_level_modules() -> None:
    modules = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL, modules


def test_every_folder_init_says_what_it_holds() -> None:
    packages = sorted(p for p in ROOT.rglob("__init__.py") if "__pycache__" not in p.parts)
    assert len(packages) > 5
    for init in packages:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        # a paragraph: more than a title line
        assert len(doc.split()) >= 30, f"{init.relative_to(ROOT.parent)}: docstring too short"


def test_no_stray_folder_without_init() -> None:
    for folder in ROOT.rglob("*"):
        if folder.is_dir() and any(folder.glob("*.py")):
            assert (folder / "__init__.py").exists(), folder
