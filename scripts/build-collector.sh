#!/usr/bin/env bash
# Build a SizeWise collector distribution with the OpenTelemetry Collector Builder:
#
#   scripts/build-collector.sh      the minimal single-node one (collector/builder-config.yaml, builder
#                                   v0.165.0) into build/otelcol-sizewise/otelcol-sizewise
#   scripts/build-collector.sh ha   the HA tiers' one (collector/builder-config-ha.yaml: the single-node
#                                   components plus the loadbalancing exporter and tail sampling, at the
#                                   manifest's release) into build/otelcol-sizewise-ha/
#
# Cached: does nothing when the binary exists and is newer than its manifest (FORCE=1 rebuilds). Each
# builder release is installed under build/tools/ocb-<version>/, so the two never replace each other.
# Go's module and build caches stay where `go env` puts them: a rebuild after a manifest change only
# compiles what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

case "${1:-single}" in
  single) NAME=otelcol-sizewise; MANIFEST=collector/builder-config.yaml
          BUILDER_VERSION="${OCB_VERSION:-v0.165.0}"; LOG=build-collector ;;
  ha)     NAME=otelcol-sizewise-ha; MANIFEST=collector/builder-config-ha.yaml
          BUILDER_VERSION="v$(sed -n 's/^  version: //p' "$MANIFEST")"; LOG=build-collector-ha ;;
  *)      echo "usage: scripts/build-collector.sh [single|ha]" >&2; exit 2 ;;
esac
OUT_DIR="build/$NAME"
BINARY="$OUT_DIR/$NAME"

if [[ "${FORCE:-0}" != "1" && -x "$BINARY" && "$BINARY" -nt "$MANIFEST" ]]; then
  echo "$LOG: $BINARY is up to date (newer than $MANIFEST)"
  exit 0
fi
command -v go >/dev/null || { echo "$LOG: the Go toolchain is required" >&2; exit 1; }

BUILDER_DIR="$ROOT/build/tools/ocb-${BUILDER_VERSION#v}"
if [[ ! -x "$BUILDER_DIR/builder" ]]; then
  echo "$LOG: installing the collector builder $BUILDER_VERSION"
  GOBIN="$BUILDER_DIR" go install "go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
fi

start=$(date +%s)
echo "$LOG: building $BINARY with $("$BUILDER_DIR/builder" version 2>&1)"
# The builder regenerates the Go sources in OUT_DIR; the binary is written last, so an
# interrupted build never leaves a binary that looks fresh.
mkdir -p "$OUT_DIR"
rm -f "$BINARY"
"$BUILDER_DIR/builder" --config="$MANIFEST"
touch "$BINARY"
"$BINARY" --version
echo "$LOG: done in $(( $(date +%s) - start ))s"
