#!/usr/bin/env bash
# The version matrix (issue 17): the unit suite plus a smoke set of integration tests (one real PostgreSQL +
# Redis round trip, one real Prometheus scraping the demo, both instrumentation paths counting alike)
# against a locked set of dependency versions.
#
#   scripts/matrix.sh CELL [pytest args]   venv build/matrix/CELL from ci/locks/CELL.txt (+ this tree,
#                                          editable, no deps), run the tests, print one result line
#   scripts/matrix.sh venv CELL ...        only build the cells' venvs (before running cells side by side:
#                                          they would share build/matrix/.tools)
#   scripts/matrix.sh lock [CELL ...]      re-resolve ci/locks/CELL.txt from pyproject.toml's [test] extra
#                                          under the constraints in ci/locks/CELL.in (all cells by default)
#
# Cells: floor (the documented floors), middle, newest (what `make test` installs). The venv is rebuilt only
# when the lock file or pyproject.toml changed. uv, at a pinned version, comes from PyPI into
# build/matrix/.tools. Exit status: 0 when every test of the cell passed.
set -euo pipefail
cd "$(dirname "$0")/.."
# uv reads the machine's certificate store, as pip does through pip.conf: CI's environment carries no
# SSL_CERT_FILE, and a registry behind a local CA is otherwise refused ("invalid peer certificate").
export UV_SYSTEM_CERTS=1

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
TOOLS=build/matrix/.tools
LOCKS=ci/locks
SMOKE=(
  "tests/integration/test_foundation.py::test_demo_exports_every_foundation_series"
  "tests/integration/test_dashboard_prometheus.py::test_every_panel_returns_data"
  "tests/integration/test_fastpath_modes.py"
)

uv_bin() {
  if [ "$("$TOOLS/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
  echo "$TOOLS/bin/uv"
}

lock() {
  local uv cell
  uv=$(uv_bin)
  for cell in "$@"; do
    [ -f "$LOCKS/$cell.in" ] || { echo "matrix: no $LOCKS/$cell.in" >&2; exit 2; }
    "$uv" pip compile -q pyproject.toml --extra test -c "$LOCKS/$cell.in" -o "$LOCKS/$cell.txt" \
      --universal --python "$PYTHON" --custom-compile-command "scripts/matrix.sh lock $cell"
    echo "matrix: wrote $LOCKS/$cell.txt"
  done
}

# The venv for a cell, rebuilt when its lock file or pyproject.toml changed (the stamp holds both hashes).
build_venv() {
  local cell=$1 venv=build/matrix/$1 uv stamp
  stamp=$(cat "$LOCKS/$cell.txt" pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
  uv=$(uv_bin)
  rm -rf "$venv"
  "$uv" venv -q --python "$PYTHON" "$venv"
  "$uv" pip sync -q --python "$venv/bin/python" "$LOCKS/$cell.txt"
  "$uv" pip install -q --python "$venv/bin/python" --no-deps -e .
  "$uv" pip check -q --python "$venv/bin/python"
  echo "$stamp" > "$venv/.stamp"
}

# pytest's closing counts ("850 passed, 2 failed in 61.2s (0:01:01)" -> "850 passed, 2 failed").
counts() { grep -E '^(=+ )?([0-9]+ [a-z]+|no tests ran)[a-z, 0-9]* in [0-9.]+s' "$1" | tail -1 \
             | sed -E 's/^=+ //; s/ in [0-9.]+s.*//' || true; }

run_cell() {
  local cell=$1; shift
  [ -f "$LOCKS/$cell.txt" ] || { echo "matrix: no $LOCKS/$cell.txt (cells: floor middle newest)" >&2; exit 2; }
  local start venv=build/matrix/$cell log=build/matrix/$cell.log status=0 versions
  start=$(date +%s)
  mkdir -p build/matrix
  build_venv "$cell"
  local setup=$(( $(date +%s) - start ))
  versions=$("$venv/bin/python" - <<'PY'
from importlib.metadata import version
names = ["fastapi", "starlette", "opentelemetry-sdk", "opentelemetry-instrumentation-fastapi", "SQLAlchemy",
         "redis", "httpx", "pydantic"]
print(" ".join(f"{n.removeprefix('opentelemetry-')}={version(n)}" for n in names))
PY
)
  : > "$log"
  PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfE tests/unit "$@" \
    >> "$log" 2>&1 || status=1
  local unit; unit=$(counts "$log")
  PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfE "${SMOKE[@]}" "$@" \
    > "$log.smoke" 2>&1 || status=1
  local smoke; smoke=$(counts "$log.smoke")
  cat "$log.smoke" >> "$log" && rm -f "$log.smoke"
  grep -E '^(FAILED|ERROR) ' "$log" || true
  local verdict=PASS; [ "$status" = 0 ] || verdict=FAIL
  echo "matrix $cell: $verdict unit [${unit:-no result}] smoke [${smoke:-no result}]" \
       "in $(( $(date +%s) - start )) s (setup ${setup} s; $versions; log $log)"
  return "$status"
}

case "${1:-}" in
  venv) shift; for cell in "$@"; do build_venv "$cell"; done ;;
  lock) shift; if [ $# -eq 0 ]; then set -- floor middle newest; fi; lock "$@" ;;
  ""|-h|--help) sed -n '2,13p' "$0"; exit 2 ;;
  *) run_cell "$@" ;;
esac
