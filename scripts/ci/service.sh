#!/usr/bin/env bash
# System needs of the service tests (issue 4), sourced by .ci/run so that the export below holds:
# Debian chromium for the dashboard browser test, and the PostgreSQL server the store tests run on.
# Idempotent and quick when everything is there; fails if PostgreSQL is not reachable, so that the
# PostgreSQL store tests never skip silently in CI.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi

export GRIDFLEX_TEST_PG_URL="${GRIDFLEX_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p 5432 -t 10 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
else
    timeout 10 bash -c '</dev/tcp/127.0.0.1/5432' 2>/dev/null \
        || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi
