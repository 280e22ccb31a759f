#!/usr/bin/env bash
# Installs the real servers the integration tests run (Debian packages), once.
# Needs root (or sudo); without it, prints what is missing and exits non-zero.
set -euo pipefail
# Prometheus, Alertmanager and kustomize are built from the Go module proxy at the pinned versions
# (scripts/build-servers.sh); Debian's are older than what compose.yaml runs.
PACKAGES=(postgresql redis-server wrk chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "missing Debian packages (install them as root): ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian packages start their own services; the tests start private instances instead.
for svc in postgresql redis-server; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
