#!/usr/bin/env bash
# The HA tiers' collector distribution: scripts/build-collector.sh ha (kept for the docs' commands).
exec bash "$(dirname "${BASH_SOURCE[0]}")/build-collector.sh" ha "$@"
