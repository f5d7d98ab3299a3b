#!/usr/bin/env bash
# Installs a real Slurm (slurmctld + slurmd + client tools) and munge from Debian for the
# `slurm` integration tests. Idempotent: quick when already installed. The tests' fixture
# writes its own slurm.conf and starts the daemons; nothing is started here.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
   && command -v scontrol >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
