#!/usr/bin/env bash
# Builds of-watchdog and faas-cli with `go install` from their Go modules at pinned commits.
# Writes .tools/bin/{of-watchdog,faas-cli}; exits non-zero (and says why) when a build fails.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TOOLS="${F2_TOOLS_DIR:-$ROOT/.tools}"
# of-watchdog 0.11.x and faas-cli 0.18.x commits; see docs/toolchain.md.
OF_WATCHDOG_MODULE="github.com/openfaas/of-watchdog"
OF_WATCHDOG_REF="${OF_WATCHDOG_REF:-a265b19f6e058c8bd8a2adb4e601b9783a87b452}"
FAAS_CLI_MODULE="github.com/openfaas/faas-cli"
FAAS_CLI_REF="${FAAS_CLI_REF:-65e53aa0a046155658db536732e272b14c81739e}"
mkdir -p "$TOOLS/bin"
status=0
build() {  # name module ref
  local name="$1" module="$2" ref="$3" stamp="$TOOLS/bin/.$1.ref"
  if [ -x "$TOOLS/bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ref" ]; then return 0; fi
  local refused="$TOOLS/bin/.$name.unavailable"
  if [ -f "$refused" ] && [ "$(head -n1 "$refused")" = "$ref" ] && [ -z "${F2_RETRY_GO_TOOLS:-}" ]; then
    echo "[go-tools] $name: not available here ($(tail -n1 "$refused")); F2_RETRY_GO_TOOLS=1 retries"
    status=1; return 1
  fi
  if ! command -v go >/dev/null; then echo "[go-tools] go not found: cannot build $name"; return 1; fi
  local gobin; gobin="$(mktemp -d)"
  if out="$(GOBIN="$gobin" GOFLAGS=-mod=mod go install "$module@$ref" 2>&1)"; then
    local built; built="$(ls "$gobin" | head -n1)"
    mv "$gobin/$built" "$TOOLS/bin/$name" && echo "$ref" > "$stamp"
    echo "[go-tools] built $name from $module@$ref"
  else
    echo "[go-tools] cannot build $name from $module@$ref:"
    echo "$out" | tail -n 3 | sed 's/^/[go-tools]   /'
    printf '%s\n%s\n' "$ref" "$(echo "$out" | grep -m1 -oE '[0-9]{3} [A-Za-z]+' || echo failed)" > "$refused"
    status=1
  fi
  rm -rf "$gobin"
}
build of-watchdog "$OF_WATCHDOG_MODULE" "$OF_WATCHDOG_REF"
build faas-cli "$FAAS_CLI_MODULE" "$FAAS_CLI_REF"
exit $status
