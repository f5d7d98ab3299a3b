#!/usr/bin/env bash
# Installs a real Prometheus server from Debian for the Prometheus site-meter tests
# (tests/test_meter_prometheus.py). Idempotent: quick when already installed. The tests write
# their own prometheus.yml and start the server on a free loopback port; nothing is started here
# (the Debian package's own service is stopped if the package starts it, so it holds no port).
set -euo pipefail
if command -v prometheus >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
$SUDO systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true
