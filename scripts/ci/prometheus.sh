#!/usr/bin/env bash
# Installs a real Prometheus server from Debian for the Prometheus site-meter tests
# (tests/test_meter_prometheus.py). Idempotent: quick when already installed. The tests write
# their own prometheus.yml and start the server on a free loopback port; nothing is started here
# (the Debian package's own service is stopped if the package starts it, so it holds no port).
set -euo pipefail
if command -v prometheus >/dev/null; then
    exit 0
fi
source "$(dirname "$0")/apt.sh"
apt_install prometheus
as_root systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true
