#!/usr/bin/env bash
# Builds helm with `go install` from its Go module at a pinned version into .tools/bin/helm.
# Idempotent: does nothing when .tools/bin/helm already reports the pinned version.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${F2_TOOLS_DIR:-$ROOT/.tools}"
HELM_MODULE="helm.sh/helm/v3/cmd/helm"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
target="$TOOLS/bin/helm"
stamp="$TOOLS/bin/.helm.ref"

if [ -x "$target" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$HELM_VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "[helm] go not found: cannot build helm $HELM_VERSION" >&2
  exit 1
fi
mkdir -p "$TOOLS/bin"
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
echo "[helm] building $HELM_MODULE@$HELM_VERSION (a few minutes on two cores)"
# -X sets the version `helm version` reports; go install alone would leave it unset.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
GOBIN="$gobin" CGO_ENABLED=0 go install -ldflags "$ldflags" "$HELM_MODULE@$HELM_VERSION"
mv "$gobin/helm" "$target.tmp"
mv "$target.tmp" "$target"
echo "$HELM_VERSION" > "$stamp"
echo "[helm] installed $("$target" version --short) at $target"
