#!/usr/bin/env bash
# Installs HAProxy from Debian for the router integration tests (tests/test_router_haproxy.py).
# Idempotent: quick when already installed. The tests' fixture writes its own haproxy.cfg with
# an admin socket in a temporary directory and starts haproxy itself; nothing is started here.
set -euo pipefail
if command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; then
    exit 0
fi
source "$(dirname "$0")/apt.sh"
apt_install haproxy
# The package enables a system-wide haproxy service; the tests do not need it running.
as_root systemctl disable --now haproxy >/dev/null 2>&1 || true
