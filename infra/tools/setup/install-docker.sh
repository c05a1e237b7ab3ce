#!/usr/bin/env bash
# Installs Debian's Docker engine (docker.io: dockerd, containerd, runc, the client), the
# docker-registry (the local registry `faas-cli push` writes to) and mmdebstrap (which makes the
# Python base image where none can be pulled). Idempotent.
#   - never installs over another engine: docker-ce or podman-docker present -> skipped
#   - a policy-rc.d that answers 101 keeps the packages' daemons from starting (the runtime
#     starts its own engine, see infra/local/launch/docker.py)
set -euo pipefail
say() { printf '\033[1m[docker]\033[0m %s\n' "$*"; }

for other in docker-ce podman-docker moby-engine; do
  if dpkg-query -W -f='${Status}' "$other" 2>/dev/null | grep -q "install ok installed"; then
    say "$other is installed: using it as it is, not installing docker.io"
    exit 0
  fi
done
PACKAGES=(docker.io docker-registry mmdebstrap)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say "installing Debian packages: ${missing[*]}"
policy_created=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  policy_created=1
fi
trap '[ -z "$policy_created" ] || $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
say "installed: $(/usr/bin/docker --version 2>/dev/null || echo 'docker client missing')"
