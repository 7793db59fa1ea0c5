#!/usr/bin/env bash
# nginx (Debian package) for the bench's ceiling row, installed without starting it: Debian's
# package starts a server on port 80 on install, which nothing here wants (the bench runs
# its own nginx on a port of its own). A policy-rc.d that refuses every start does that, and
# is removed again unless one was there before.
set -euo pipefail
echo "[bench] installing nginx (Debian package; not started)"
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    own_policy=1
fi
trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get install -y nginx >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y nginx >/dev/null; } ||
    { echo "[bench] nginx could not be installed: the ceiling row is left out"; exit 0; }
