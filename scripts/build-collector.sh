#!/usr/bin/env bash
# Build the minimal SizeWise collector distribution (collector/builder-config.yaml) with the
# OpenTelemetry Collector Builder into build/otelcol-sizewise/otelcol-sizewise.
#
# Cached: does nothing when the binary exists and is newer than the manifest (FORCE=1 rebuilds).
# Go's module and build caches (GOMODCACHE, GOCACHE) stay where `go env` puts them, so a rebuild
# after a manifest change only compiles what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILDER_VERSION="${OCB_VERSION:-v0.165.0}"
MANIFEST="collector/builder-config.yaml"
OUT_DIR="build/otelcol-sizewise"
BINARY="$OUT_DIR/otelcol-sizewise"

if [[ "${FORCE:-0}" != "1" && -x "$BINARY" && "$BINARY" -nt "$MANIFEST" ]]; then
  echo "build-collector: $BINARY is up to date (newer than $MANIFEST)"
  exit 0
fi

command -v go >/dev/null || { echo "build-collector: the Go toolchain is required" >&2; exit 1; }

BUILDER="$(go env GOPATH)/bin/builder"
if [[ ! -x "$BUILDER" ]] || ! "$BUILDER" version 2>&1 | grep -q "${BUILDER_VERSION#v}"; then
  echo "build-collector: installing the collector builder $BUILDER_VERSION"
  go install "go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
fi

start=$(date +%s)
echo "build-collector: building $BINARY with $("$BUILDER" version 2>&1)"
# The builder regenerates the Go sources in OUT_DIR; the binary is written last, so an
# interrupted build never leaves a binary that looks fresh.
mkdir -p "$OUT_DIR"
rm -f "$BINARY"
"$BUILDER" --config="$MANIFEST"
touch "$BINARY"
"$BINARY" --version
echo "build-collector: done in $(( $(date +%s) - start ))s"
