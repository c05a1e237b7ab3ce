#!/usr/bin/env bash
# Builds helm with `go install` from its Go module at a pinned version into .tools/bin/helm.
# Idempotent: does nothing when .tools/bin/helm already reports the pinned version.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TOOLS="${F2_TOOLS_DIR:-$ROOT/.tools}"
HELM_MODULE="helm.sh/helm/v3/cmd/helm"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
# The Kubernetes version `helm template`/`lint` assume by default; helm's Makefile derives it from
# its k8s.io/client-go module (v0.34 for v3.19.0 -> 1.34). Plain `go install` would leave 1.20.
HELM_K8S_VERSION="${HELM_K8S_VERSION:-1.34}"
target="$TOOLS/bin/helm"
stamp="$TOOLS/bin/.helm.ref"
ref="$HELM_VERSION k8s-$HELM_K8S_VERSION"

if [ -x "$target" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ref" ]; then
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
# -X sets what helm's own Makefile sets: its version and the default Kubernetes version.
k8s_major="${HELM_K8S_VERSION%%.*}" k8s_minor="${HELM_K8S_VERSION#*.}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done
GOBIN="$gobin" CGO_ENABLED=0 go install -ldflags "$ldflags" "$HELM_MODULE@$HELM_VERSION"
mv "$gobin/helm" "$target.tmp"
mv "$target.tmp" "$target"
echo "$ref" > "$stamp"
echo "[helm] installed $("$target" version --short) at $target"
