#!/usr/bin/env bash
# Build the servers and tools the integration tests run, at the versions compose.yaml and the k8s
# manifests pin, from the Go module proxy, into build/tools/<name>-<version>/ (cached: a binary that
# exists is not rebuilt; FORCE=1 rebuilds). tests/unit/test_pinned_versions.py keeps the pins in step.
#
#   prometheus, promtool   3.16.0  (module v0.316.0; about 8 minutes on 2 cores the first time)
#   alertmanager, amtool   0.31.1  (v0.32 and later do not build from the module proxy: their UI
#                                   assets, ui/app/dist, are not in the module; 0.31.1 is the newest that does)
#   kustomize              5.7.1
#   victoria-metrics       1.151.0 (single node, the HA tests' long-term store; about 2 minutes)
#
# Usage: scripts/build-servers.sh [prometheus|alertmanager|kustomize|victoriametrics ...]   (default: all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROMETHEUS_VERSION=3.16.0
ALERTMANAGER_VERSION=0.31.1
KUSTOMIZE_VERSION=5.7.1
VICTORIAMETRICS_VERSION=1.151.0

command -v go >/dev/null || { echo "build-servers: the Go toolchain is required" >&2; exit 1; }
export CGO_ENABLED=0

# go_build NAME VERSION PACKAGE@MODVERSION [ldflags]: install PACKAGE into build/tools/NAME-VERSION.
go_build() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local dir="build/tools/$name-$version"
  if [[ "${FORCE:-0}" != "1" && -x "$dir/$name" ]]; then
    echo "build-servers: $dir/$name is cached"
    return 0
  fi
  mkdir -p "$dir"
  local start tmp
  start=$(date +%s)
  # Installed into a temp dir and moved last, so an interrupted build never leaves a binary.
  tmp=$(mktemp -d "$dir.XXXX")
  echo "build-servers: building $name $version from $pkg"
  GOBIN="$ROOT/$tmp" go install -trimpath -ldflags "-s -w $ldflags" "$pkg"
  mv "$tmp/$name" "$dir/$name"
  rm -rf "$tmp"
  echo "build-servers: $name $version built in $(( $(date +%s) - start )) s"
}

prom_ldflags() {  # Prometheus reports no version unless it is stamped in.
  local v="github.com/prometheus/common/version"
  echo "-X $v.Version=$1 -X $v.Branch=HEAD -X $v.Revision=module-proxy -X $v.BuildUser=sizewise -X $v.BuildDate=reproducible"
}

build_prometheus() {
  local mod="v0.$(( ${PROMETHEUS_VERSION%%.*} * 100 + $(cut -d. -f2 <<<"$PROMETHEUS_VERSION") )).${PROMETHEUS_VERSION##*.}"
  go_build prometheus "$PROMETHEUS_VERSION" "github.com/prometheus/prometheus/cmd/prometheus@$mod" "$(prom_ldflags "$PROMETHEUS_VERSION")"
  go_build promtool "$PROMETHEUS_VERSION" "github.com/prometheus/prometheus/cmd/promtool@$mod" "$(prom_ldflags "$PROMETHEUS_VERSION")"
}

build_alertmanager() {
  go_build alertmanager "$ALERTMANAGER_VERSION" "github.com/prometheus/alertmanager/cmd/alertmanager@v$ALERTMANAGER_VERSION" "$(prom_ldflags "$ALERTMANAGER_VERSION")"
  go_build amtool "$ALERTMANAGER_VERSION" "github.com/prometheus/alertmanager/cmd/amtool@v$ALERTMANAGER_VERSION" "$(prom_ldflags "$ALERTMANAGER_VERSION")"
}

build_kustomize() {
  go_build kustomize "$KUSTOMIZE_VERSION" "sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION"
}

build_victoriametrics() {
  go_build victoria-metrics "$VICTORIAMETRICS_VERSION" \
    "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v$VICTORIAMETRICS_VERSION" \
    "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-v$VICTORIAMETRICS_VERSION"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(kustomize alertmanager prometheus victoriametrics)
for t in "${targets[@]}"; do
  case "$t" in
    prometheus|alertmanager|kustomize|victoriametrics) "build_$t" ;;
    *) echo "build-servers: unknown target $t" >&2; exit 2 ;;
  esac
done
