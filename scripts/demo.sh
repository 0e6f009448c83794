#!/usr/bin/env bash
# The main job, end to end: installs missing Debian packages, builds, starts the
# embedded PostgreSQL (a cluster of the project's own in var/pg, kept between
# runs) unless --database-url points at an existing server, applies the schema
# migrations, ingests the sample scans (../shared/data/fadul) and prints what
# was stored. Running it again stores nothing new (ingest is idempotent by the
# SHA-256 of each file) and says so.
# Usage: ./scripts/demo.sh [--database-url URL] [--keep-running]
#   BUILD_DIR=... to build elsewhere than build/; THREADS=N for ingest threads.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DB_URL=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --database-url) [ $# -ge 2 ] || die "--database-url needs a value"; DB_URL="$2"; shift 2 ;;
    --keep-running) KEEP=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done

install_deps
BUILD_DIR="${BUILD_DIR:-$REPO_ROOT/build}"
build_project "$BUILD_DIR"
CTL="$BUILD_DIR/src/cli/ballisticsctl"
DATA="$REPO_ROOT/../shared/data"
[ -d "$DATA/fadul" ] || die "sample scans not found at $DATA/fadul"

if [ -z "$DB_URL" ]; then
  PG_DIR="$REPO_ROOT/var/pg"
  # As root the cluster belongs to the postgres user, which must be able to reach
  # it: a checkout under /root (mode 700) is not reachable, so keep the cluster
  # in a directory of its own under /var/tmp instead.
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$REPO_ROOT/var"
    if ! runuser -u postgres -- test -x "$REPO_ROOT/var"; then
      PG_DIR="/var/tmp/ballistics-demo-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)/pg"
      log "user postgres cannot enter $REPO_ROOT/var; keeping the demo cluster in $PG_DIR"
      mkdir -p "$(dirname "$PG_DIR")"
      chmod 755 "$(dirname "$PG_DIR")"
    fi
  fi
  # A cluster left running by --keep-running is stopped first so it restarts on a free port.
  pg_stop "$PG_DIR"
  [ $KEEP -eq 1 ] || trap 'pg_stop "$PG_DIR"' EXIT
  pg_start "$PG_DIR" "$(free_port 15432)"
  DB_URL="$BALLISTICS_DATABASE_URL"
fi
export BALLISTICS_DATABASE_URL="$DB_URL"

log "inspecting one scan"
"$CTL" inspect "$DATA/fadul/fadul-1-1.x3p"

log "applying database migrations"
"$CTL" db migrate

log "ingesting $(ls "$DATA"/fadul/*.x3p | wc -l) Fadul scans (read, normalize, store; one transaction per file)"
"$CTL" ingest "$DATA"/fadul/*.x3p --agency "CSAFE" --case "Fadul-2011" --calibre "9mm Luger" \
  --source test-fire --submitted-by demo ${THREADS:+--threads "$THREADS"}

log "what is stored"
"$CTL" casings list
"$CTL" db status

# ---- the API: ballisticsd with TLS, upload and search through gRPC, HTML report
D="$BUILD_DIR/src/server/ballisticsd"
API_DIR="$REPO_ROOT/var/api"
mkdir -p "$API_DIR"
if [ ! -s "$API_DIR/server.crt" ]; then
  log "making a self-signed TLS certificate for localhost (demo only) in $API_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$API_DIR/server.key" -out "$API_DIR/server.crt" -days 365 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
fi
log "creating an examiner API token for agency CSAFE (directly on the database: bootstrap)"
TOKEN="$("$CTL" admin create-token --agency CSAFE --role examiner --holder demo --valid-days 1 2>/dev/null)"
GRPC_PORT="$(free_port 50051)"
rm -f "$API_DIR/port"
log "starting ballisticsd (TLS) on 127.0.0.1:$GRPC_PORT"
"$D" --listen "127.0.0.1:$GRPC_PORT" --tls-cert "$API_DIR/server.crt" --tls-key "$API_DIR/server.key" \
  --metrics-listen "127.0.0.1:0" --port-file "$API_DIR/port" >"$API_DIR/ballisticsd.log" 2>&1 &
D_PID=$!
stop_server() { kill "$D_PID" 2>/dev/null && wait "$D_PID" 2>/dev/null || true; }
trap 'stop_server; [ $KEEP -eq 1 ] || pg_stop "${PG_DIR:-}"' EXIT
for _ in $(seq 600); do [ -s "$API_DIR/port" ] && break; kill -0 "$D_PID" 2>/dev/null || { cat "$API_DIR/ballisticsd.log"; die "ballisticsd did not start"; }; sleep 0.1; done
API=(--server "localhost:$GRPC_PORT" --ca-cert "$API_DIR/server.crt" --token "$TOKEN")

log "uploading fadul-1-1 through the API (already stored above: the same casing comes back)"
CASING="$("$CTL" upload "$DATA/fadul/fadul-1-1.x3p" --case "Fadul-2011" --calibre "9mm Luger" --source test-fire \
  --json "${API[@]}" | sed -n 's/.*"casing_id": *\([0-9]*\).*/\1/p' | head -1)"
log "searching with casing $CASING through gRPC"
"$CTL" search --casing "$CASING" --top 10 "${API[@]}" | tee "$API_DIR/search.txt"
SEARCH_ID="$(sed -n 's/^search \([0-9]*\) .*/\1/p' "$API_DIR/search.txt")"
"$CTL" report --search "$SEARCH_ID" --out "$API_DIR/report.html" --top 3 "${API[@]}"
log "examiner report: $API_DIR/report.html"
log "metrics: curl http://127.0.0.1:$(cut -d' ' -f2 "$API_DIR/port")/metrics ; server log: $API_DIR/ballisticsd.log"
if [ $KEEP -eq 1 ]; then
  trap - EXIT
  log "ballisticsd keeps running (pid $D_PID): export BALLISTICS_SERVER=localhost:$GRPC_PORT BALLISTICS_CA_CERT=$API_DIR/server.crt BALLISTICS_TOKEN=$TOKEN"
fi

if [ $KEEP -eq 1 ]; then
  log "PostgreSQL keeps running: export BALLISTICS_DATABASE_URL=$DB_URL"
fi
