#!/usr/bin/env bash
# Build the HA collector tiers' distribution (collector/builder-config-ha.yaml: the single-node
# components plus the loadbalancing exporter and tail sampling) into build/otelcol-sizewise-ha/.
# Cached like scripts/build-collector.sh: nothing to do when the binary is newer than the manifest.
# The builder of the manifest's release is installed beside it (build/tools/ocb-<version>/), so it
# never replaces the one scripts/build-collector.sh uses.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MANIFEST="collector/builder-config-ha.yaml"
BUILDER_VERSION="v$(sed -n 's/^  version: //p' "$MANIFEST")"
OUT_DIR="build/otelcol-sizewise-ha"
BINARY="$OUT_DIR/otelcol-sizewise-ha"

if [[ "${FORCE:-0}" != "1" && -x "$BINARY" && "$BINARY" -nt "$MANIFEST" ]]; then
  echo "build-collector-ha: $BINARY is up to date (newer than $MANIFEST)"
  exit 0
fi
command -v go >/dev/null || { echo "build-collector-ha: the Go toolchain is required" >&2; exit 1; }

BUILDER_DIR="$ROOT/build/tools/ocb-${BUILDER_VERSION#v}"
if [[ ! -x "$BUILDER_DIR/builder" ]]; then
  echo "build-collector-ha: installing the collector builder $BUILDER_VERSION"
  GOBIN="$BUILDER_DIR" go install "go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
fi

start=$(date +%s)
mkdir -p "$OUT_DIR"
rm -f "$BINARY"
"$BUILDER_DIR/builder" --config="$MANIFEST"
touch "$BINARY"
"$BINARY" --version
echo "build-collector-ha: done in $(( $(date +%s) - start ))s"
