#!/usr/bin/env bash
# Installs f2pipe on a faasd host: places Mosquitto, Kafka (KRaft, one node), TimescaleDB, MinIO,
# the ACL/CRL sync agent, the bridge and the connector in /var/lib/faasd/docker-compose.yaml,
# restarts faasd, creates the Kafka topics, the databases' schema and the registry bucket,
# creates the functions' OpenFaaS secrets with `faas-cli secret create` and runs
# `faas-cli up -f stack.yml`. Idempotent: generated passwords and the CA are kept, the compose
# block is replaced, topics and schema are only added to.
#
# Run as root from a checkout of the repository on the faasd host (see infra/deploy/faasd/README.md):
#   sudo F2_REGISTRY=ghcr.io/acme/f2pipe F2_MQTT_HOSTS=mqtt.example.com infra/deploy/faasd/install.sh
#
# Environment:
#   F2_REGISTRY      image prefix of the f2pipe images (functions and services); required
#   F2_TAG           image tag (default 0.1.0)
#   F2_MQTT_HOSTS    comma-separated DNS names / IPs devices use for the broker (server cert SANs)
#   F2_PARTITIONS    partitions per pipeline topic (default 6)
#   F2_RETENTION_DAYS  days raw_iot_data and iot_dead_letter keep records, for `make redrive`
#                    and `make reprocess` (default 7; set on existing topics too)
#   F2_DEPLOY_ONLY=1 run `faas-cli deploy` instead of `faas-cli up` (images built and pushed
#                    elsewhere, e.g. in CI: faasd hosts should not run Docker)
#   F2_SKIP_FUNCTIONS=1  stop after the services (no secrets, no faas-cli up)
#   FAASD_DIR        faasd's working directory (default /var/lib/faasd)
#   PYTHON           a Python with requirements.txt installed (default: .venv/bin/python,
#                    created when missing)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/infra/deploy/faasd"
CHART_FILES="$ROOT/infra/deploy/k8s/f2pipe/files"
FAASD_DIR="${FAASD_DIR:-/var/lib/faasd}"
F2_DIR="$FAASD_DIR/f2pipe"
COMPOSE="$FAASD_DIR/docker-compose.yaml"
F2_TAG="${F2_TAG:-0.1.0}"
F2_PARTITIONS="${F2_PARTITIONS:-6}"
F2_RETENTION_DAYS="${F2_RETENTION_DAYS:-7}"
CERTS="${F2_CERTS_DIR:-$ROOT/certs}"
GATEWAY="${OPENFAAS_URL:-http://127.0.0.1:8080}"
BUCKET="f2pipe-registry"

# uids inside the images (faasd chowns bind sources to a service's numeric user)
UID_MOSQUITTO=1883   # eclipse-mosquitto
UID_KAFKA=1000       # apache/kafka (appuser)
UID_POSTGRES=70      # timescale/timescaledb (alpine postgres)
UID_MINIO=10010      # set by `user:` in the compose file
UID_F2PIPE=10001     # f2pipe images (infra/deploy/docker/Dockerfile)

log() { printf '[f2pipe-faasd] %s\n' "$*"; }
die() { printf '[f2pipe-faasd] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (faasd's files are root-owned)"
[ -f "$COMPOSE" ] || die "$COMPOSE not found: install faasd first (see infra/deploy/faasd/README.md)"
[ -n "${F2_REGISTRY:-}" ] || die "set F2_REGISTRY to the registry prefix of the f2pipe images"
command -v faas-cli >/dev/null || [ "${F2_SKIP_FUNCTIONS:-0}" = 1 ] || die "faas-cli not on PATH"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
  log "creating $ROOT/.venv with the pinned requirements"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install --quiet -r "$ROOT/requirements.txt"
  PYTHON="$ROOT/.venv/bin/python"
fi
export PYTHONPATH="$ROOT:$ROOT/functions"

secret_file() {  # path: a random 0600 secret, created once and never overwritten
  [ -s "$1" ] || ( umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))' > "$1" )
}

install_file() {  # mode owner src dst
  install -m "$1" -o "$2" -g "$2" "$3" "$4"
}

# --- certificates and credentials --------------------------------------------------------------
hosts="${F2_MQTT_HOSTS:-$(hostname -f),$(hostname -I | tr ' ' ',' | sed 's/,*$//')}"
log "CA and broker certificate in $CERTS (SANs: $hosts)"
"$PYTHON" -m certs --dir "$CERTS" init --hosts "$hosts" >/dev/null

mkdir -p "$F2_DIR/secrets/generated"
chmod 0700 "$F2_DIR/secrets" "$F2_DIR/secrets/generated"
GEN="$F2_DIR/secrets/generated"
for name in postgres-password f2pipe-db-password s3-secret-access-key mqtt-command-password; do
  secret_file "$GEN/$name"
done
# the command function's callers, <name>:<token> per line (one generated caller, operator)
[ -s "$GEN/command-token" ] || ( umask 077; "$PYTHON" -c \
  'import secrets; print("operator:" + secrets.token_urlsafe(32))' > "$GEN/command-token" )
[ -s "$GEN/s3-access-key-id" ] || ( umask 077; echo "f2pipe-registry" > "$GEN/s3-access-key-id" )
[ -s "$GEN/kafka-cluster-id" ] || "$PYTHON" -c \
  'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' \
  > "$GEN/kafka-cluster-id"
db_password="$(cat "$GEN/f2pipe-db-password")"
devices_dsn="postgresql://f2pipe:${db_password}@timescaledb:5432/devices"
timeseries_dsn="postgresql://f2pipe:${db_password}@timescaledb:5432/timeseries"

# --- directories and files the services mount --------------------------------------------------
log "laying out $F2_DIR"
for dir in mosquitto/config mosquitto/certs mosquitto/registry mosquitto/auth mosquitto/data \
           mosquitto/bin kafka/data timescaledb/data timescaledb/initdb minio/data \
           secrets/minio secrets/timescaledb secrets/aclsync secrets/bridge secrets/connector \
           secrets/functions; do
  ( umask 022; mkdir -p "$F2_DIR/$dir" )
done
chmod 0755 "$F2_DIR"
chmod 0700 "$F2_DIR"/secrets/*

install_file 0644 root "$CHART_FILES/mosquitto.conf" "$F2_DIR/mosquitto/config/mosquitto.conf"
install_file 0644 root "$CHART_FILES/internal.acl" "$F2_DIR/mosquitto/config/internal.acl"
# One copy of each script serves both deployments: the Helm chart's files/.
install_file 0755 root "$CHART_FILES/run-broker.sh" "$F2_DIR/mosquitto/bin/run-broker.sh"
ca_changed=0  # a rotated CA (docs/deploy.md): the seeded CRL must be the new CA's
if [ -f "$F2_DIR/mosquitto/certs/ca.crt" ] && ! cmp -s "$CERTS/ca.crt" "$F2_DIR/mosquitto/certs/ca.crt"; then
  ca_changed=1
  log "the CA changed: the broker gets the new CA's CRL until the registry is republished"
fi
install_file 0644 root "$CERTS/ca.crt" "$F2_DIR/mosquitto/certs/ca.crt"
install_file 0644 root "$CERTS/server.crt" "$F2_DIR/mosquitto/certs/server.crt"
install_file 0600 "$UID_MOSQUITTO" "$CERTS/server.key" "$F2_DIR/mosquitto/certs/server.key"
# first ACL and CRL so the broker starts before any device exists; the agent replaces them
for name in devices.acl crl.pem; do
  if [ ! -s "$F2_DIR/mosquitto/registry/$name" ] || { [ "$ca_changed" = 1 ] && [ "$name" = crl.pem ]; }; then
    install_file 0644 "$UID_MOSQUITTO" "$CERTS/$name" "$F2_DIR/mosquitto/registry/$name"
  fi
done
# the bridge's and the command sender's passwords, hashed as mosquitto_passwd does ($7$)
"$PYTHON" -m infra.deploy.docker.mosquitto_passwd --out "$F2_DIR/mosquitto/auth/passwd" \
  "f2-bridge=$CERTS/secrets/mqtt-password" "f2-command=$GEN/mqtt-command-password"
chown -R "$UID_MOSQUITTO:$UID_MOSQUITTO" "$F2_DIR/mosquitto"
chmod 0640 "$F2_DIR/mosquitto/auth/passwd"

install_file 0755 root "$CHART_FILES/010-f2pipe-databases.sh" \
  "$F2_DIR/timescaledb/initdb/010-f2pipe-databases.sh"
install_file 0600 "$UID_POSTGRES" "$GEN/postgres-password" "$F2_DIR/secrets/timescaledb/postgres-password"
install_file 0600 "$UID_POSTGRES" "$GEN/f2pipe-db-password" "$F2_DIR/secrets/timescaledb/f2pipe-db-password"

install_file 0600 "$UID_MINIO" "$GEN/s3-access-key-id" "$F2_DIR/secrets/minio/access_key"
install_file 0600 "$UID_MINIO" "$GEN/s3-secret-access-key" "$F2_DIR/secrets/minio/secret_key"
chown -R "$UID_MINIO:$UID_MINIO" "$F2_DIR/minio"

for name in s3-access-key-id s3-secret-access-key; do
  install_file 0600 "$UID_MOSQUITTO" "$GEN/$name" "$F2_DIR/secrets/aclsync/$name"
done
install_file 0600 "$UID_F2PIPE" "$CERTS/secrets/mqtt-password" "$F2_DIR/secrets/bridge/mqtt-bridge-password"
install_file 0600 "$UID_F2PIPE" "$FAASD_DIR/secrets/basic-auth-password" \
  "$F2_DIR/secrets/connector/basic-auth-password"
chown "$UID_MOSQUITTO" "$F2_DIR/secrets/aclsync"
chown "$UID_F2PIPE" "$F2_DIR/secrets/bridge" "$F2_DIR/secrets/connector"
chown "$UID_POSTGRES" "$F2_DIR/secrets/timescaledb"
chown "$UID_MINIO" "$F2_DIR/secrets/minio"
chown -R "$UID_KAFKA:$UID_KAFKA" "$F2_DIR/kafka"

# --- compose: replace the f2pipe block in faasd's file -----------------------------------------
log "merging the f2pipe services into $COMPOSE"
[ -f "$COMPOSE.before-f2pipe" ] || cp -p "$COMPOSE" "$COMPOSE.before-f2pipe"
gateway_user="$(cat "$FAASD_DIR/secrets/basic-auth-user" 2>/dev/null || echo admin)"
"$PYTHON" -m infra.deploy.docker.faasd_compose --compose "$COMPOSE" \
  --additions "$HERE/docker-compose.f2pipe.yaml" --registry "$F2_REGISTRY" --tag "$F2_TAG" \
  --cluster-id "$(cat "$GEN/kafka-cluster-id")" --gateway-user "$gateway_user"

log "restarting faasd (it reads docker-compose.yaml at start)"
systemctl restart faasd

wait_port() {  # host port seconds
  local deadline=$(( $(date +%s) + $3 ))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$1:$2 did not open within $3 s (journalctl -u faasd)"
    sleep 2
  done
}
for port in 9000 5432 19092 1883 8080; do wait_port 127.0.0.1 "$port" 300; done

# --- topics, schema, bucket ---------------------------------------------------------------------
log "Kafka topics ($F2_PARTITIONS partitions, raw and dead letters kept $F2_RETENTION_DAYS days)"
"$PYTHON" -m infra.deploy.docker.create_topics --bootstrap 127.0.0.1:19092 \
  --partitions "$F2_PARTITIONS" --retention-days "$F2_RETENTION_DAYS"

log "database schema (devices, timeseries with TimescaleDB)"
local_dsn() { printf 'postgresql://f2pipe:%s@127.0.0.1:5432/%s' "$db_password" "$1"; }
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if "$PYTHON" -m infra.deploy.schema --devices-dsn "$(local_dsn devices)" \
      --timeseries-dsn "$(local_dsn timeseries)" --timescaledb require; then
    break
  fi
  [ "$attempt" -lt 10 ] || die "schema could not be applied"
  sleep 5
done

log "registry bucket $BUCKET"
F2_SECRETS_DIR="$GEN" "$PYTHON" -m infra.deploy.docker.ensure_bucket \
  --endpoint http://127.0.0.1:9000 --bucket "$BUCKET"

[ "${F2_SKIP_FUNCTIONS:-0}" = 1 ] && { log "services installed (functions skipped)"; exit 0; }

# --- OpenFaaS secrets and functions -------------------------------------------------------------
log "OpenFaaS secrets"
FN="$F2_DIR/secrets/functions"
(
  umask 077
  printf '%s' "$devices_dsn" > "$FN/devices-dsn"
  printf '%s' "$timeseries_dsn" > "$FN/timeseries-dsn"
  cp "$CERTS/secrets/provision-token" "$CERTS/secrets/ca-key" "$CERTS/secrets/ca-crt" "$FN/"
  cp "$GEN/s3-access-key-id" "$GEN/s3-secret-access-key" "$FN/"
  cp "$GEN/command-token" "$GEN/mqtt-command-password" "$FN/"
)
faas-cli login --gateway "$GATEWAY" --username "$gateway_user" \
  --password-stdin < "$FAASD_DIR/secrets/basic-auth-password" >/dev/null
existing="$(faas-cli secret list --gateway "$GATEWAY" 2>/dev/null || true)"
for name in devices-dsn timeseries-dsn provision-token ca-key ca-crt \
            s3-access-key-id s3-secret-access-key command-token mqtt-command-password; do
  if printf '%s\n' "$existing" | grep -qx "$name"; then
    faas-cli secret update "$name" --from-file "$FN/$name" --gateway "$GATEWAY" >/dev/null
  else
    faas-cli secret create "$name" --from-file "$FN/$name" --gateway "$GATEWAY" >/dev/null
  fi
  log "  secret $name"
done

cd "$ROOT"
export F2_REGISTRY F2_TAG OPENFAAS_URL="$GATEWAY"
if [ "${F2_DEPLOY_ONLY:-0}" = 1 ]; then
  log "faas-cli deploy -f stack.yml (prebuilt images $F2_REGISTRY/*:$F2_TAG)"
  faas-cli deploy -f stack.yml --gateway "$GATEWAY"
else
  log "faas-cli up -f stack.yml (build, push, deploy)"
  faas-cli up -f stack.yml --gateway "$GATEWAY"
fi
# --- CRL re-signing: a systemd timer (faasd has no cron); an expired CRL locks devices out -------
log "systemd timer f2pipe-crl-refresh (every 6 h)"
install -d -m 0700 "$F2_DIR/secrets/crl-refresh"
install -m 0600 "$CERTS/secrets/provision-token" "$F2_DIR/secrets/crl-refresh/provision-token"
cat > /etc/systemd/system/f2pipe-crl-refresh.service <<UNIT
[Unit]
Description=f2pipe: re-sign the device CRL through the provisioning function
After=faasd.service

[Service]
Type=oneshot
Environment=F2_SECRETS_DIR=$F2_DIR/secrets/crl-refresh
Environment=PYTHONPATH=$ROOT:$ROOT/functions
ExecStart=$PYTHON -m infra.deploy.docker.refresh_crl --gateway $GATEWAY
UNIT
cat > /etc/systemd/system/f2pipe-crl-refresh.timer <<UNIT
[Unit]
Description=f2pipe: re-sign the device CRL every 6 hours

[Timer]
OnBootSec=10min
OnUnitActiveSec=6h
Persistent=true

[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now f2pipe-crl-refresh.timer >/dev/null

log "done: devices connect to port 8883; data lands in timeseries.iot_measurements"
