#!/bin/sh
# Runs Mosquitto for f2pipe (faasd and Kubernetes): waits until the device ACL and CRL exist,
# starts the broker, and sends it SIGHUP whenever a watched file is replaced (the sync agent
# renames new versions in; Kubernetes swaps mounted secrets the same way), so ACL, password
# file and CRL are reloaded without a restart and without sharing a PID namespace with the
# agent. Exits with the broker's status. POSIX sh + stat: busybox and Debian alike.
set -eu
CONF="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
WATCH="${MOSQUITTO_WATCH_FILES:-/mosquitto/registry/devices.acl /mosquitto/registry/crl.pem /mosquitto/auth/passwd}"
WAIT_FOR="${MOSQUITTO_WAIT_FOR:-/mosquitto/registry/devices.acl /mosquitto/registry/crl.pem}"
INTERVAL="${MOSQUITTO_WATCH_SECONDS:-2}"
BIN="${MOSQUITTO_BIN:-mosquitto}"

for file in $WAIT_FOR; do
  until [ -s "$file" ]; do
    echo "run-broker: waiting for $file"
    sleep "$INTERVAL"
  done
done

fingerprint() {
  for file in $WATCH; do
    stat -L -c '%n %i %Y %s' "$file" 2>/dev/null || echo "$file missing"
  done
}

"$BIN" -c "$CONF" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
echo "run-broker: mosquitto started (pid $pid)"
last="$(fingerprint)"
while kill -0 "$pid" 2>/dev/null; do
  sleep "$INTERVAL" &
  wait $! || true
  now="$(fingerprint)"
  if [ "$now" != "$last" ]; then
    echo "run-broker: watched files changed; SIGHUP to mosquitto"
    kill -HUP "$pid" 2>/dev/null || true
    last="$now"
  fi
done
status=0
wait "$pid" || status=$?
echo "run-broker: mosquitto exited with status $status"
exit "$status"
