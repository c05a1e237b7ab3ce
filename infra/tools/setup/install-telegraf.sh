#!/usr/bin/env bash
# Builds Telegraf, the peer the benchmark compares f2pipe with, from its Go module at a pinned
# version into .tools/bin/telegraf, with custom build tags so that only what the comparison
# uses is compiled: inputs.mqtt_consumer, outputs.postgresql and the JSON parser.
# Run by `make bench` (the bench's setup step), not by `make test` or `make setup`.
# Idempotent: does nothing when .tools/bin/telegraf was built from the same version and tags.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
TOOLS="${F2_TOOLS_DIR:-$ROOT/.tools}"
TELEGRAF_MODULE="github.com/influxdata/telegraf"
TELEGRAF_VERSION="${TELEGRAF_VERSION:-v1.37.2}"
TELEGRAF_TAGS="custom,inputs.mqtt_consumer,outputs.postgresql,parsers.json"
target="$TOOLS/bin/telegraf"
stamp="$TOOLS/bin/.telegraf.ref"
ref="$TELEGRAF_VERSION $TELEGRAF_TAGS"

if [ -x "$target" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ref" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "[telegraf] go not found: cannot build telegraf $TELEGRAF_VERSION (the bench skips it)" >&2
  exit 1
fi
mkdir -p "$TOOLS/bin"
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
echo "[telegraf] building $TELEGRAF_MODULE@$TELEGRAF_VERSION with tags $TELEGRAF_TAGS (a few minutes)"
ldflags="-s -w -X $TELEGRAF_MODULE/internal.Version=${TELEGRAF_VERSION#v}"
GOBIN="$gobin" CGO_ENABLED=0 go install -tags "$TELEGRAF_TAGS" -ldflags "$ldflags" \
  "$TELEGRAF_MODULE/cmd/telegraf@$TELEGRAF_VERSION"
mv "$gobin/telegraf" "$target.tmp"
mv "$target.tmp" "$target"
echo "$ref" > "$stamp"
echo "[telegraf] installed $("$target" --version) at $target"
