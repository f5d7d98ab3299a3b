#!/usr/bin/env bash
# Installs a real Slurm (slurmctld + slurmd + client tools) and munge from Debian for the
# `slurm` integration tests. Idempotent: quick when already installed. The tests' fixture
# writes its own slurm.conf and starts the daemons; nothing is started here.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
   && command -v scontrol >/dev/null; then
    exit 0
fi
source "$(dirname "$0")/apt.sh"
apt_install slurm-wlm munge
