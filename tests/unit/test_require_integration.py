"""Under SIZEWISE_REQUIRE_INTEGRATION=1 no test can pass by skipping, however the skip is raised."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT, clean_env

SKIPPING = '''
import pytest

def test_skips():
    pytest.skip("no server here")

def test_imports_a_missing_module():
    pytest.importorskip("no_such_module_sizewise")

@pytest.mark.skipif(True, reason="marker")
def test_marked():
    pass

def test_passes():
    pass
'''
MODULE_SKIP = 'import pytest\npytest.importorskip("no_such_module_sizewise")\n\ndef test_never():\n    pass\n'


def _summary(tmp_path: Path, source: str, require: bool) -> str:
    """The closing line of a pytest run over one test module with ``source``."""
    (tmp_path / "test_skipping.py").write_text(source)
    env = clean_env({"SIZEWISE_REQUIRE_INTEGRATION": "1" if require else "0"})
    # tests.conftest loaded as a plugin, so the hooks under test are the real ones.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                             "--rootdir", str(tmp_path), str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return result.stdout.strip().splitlines()[-1]


# A skipif marker skips in the setup phase, so its failure counts as an error; a failure either way.
@pytest.mark.parametrize("require,summary", [(True, "2 failed, 1 passed, 1 error"), (False, "1 passed, 3 skipped")])
def test_a_skip_in_a_test_fails_only_when_integration_is_required(tmp_path: Path, require: bool,
                                                                 summary: str) -> None:
    assert _summary(tmp_path, SKIPPING, require).startswith(summary + " in ")


@pytest.mark.parametrize("require,summary", [(True, "1 error"), (False, "1 skipped")])
def test_a_module_that_skips_at_import_fails_when_integration_is_required(tmp_path: Path, require: bool,
                                                                         summary: str) -> None:
    assert _summary(tmp_path, MODULE_SKIP, require).startswith(summary + " in ")
