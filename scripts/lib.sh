# Shared helpers for scripts/demo.sh, scripts/test.sh and .ci/run.
# Sourced, not executed. Everything here works as root on a fresh Debian 12
# machine and as an ordinary user on a machine that already has the packages.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages the project builds and runs with (see docs/architecture.md).
BALLISTICS_DEBS=(
  build-essential cmake ninja-build pkg-config
  libopencv-dev libeigen3-dev libfftw3-dev libpq-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libzip-dev libpugixml-dev libssl-dev libtiff-dev
  postgresql postgresql-contrib
  python3-grpcio python3-protobuf openssl chromium
  clang libclang-rt-14-dev
)

# Installs the packages that are missing; skips apt entirely when all are present.
install_deps() {
  local missing=()
  for p in "${BALLISTICS_DEBS[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "all Debian packages present"
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures and builds into $1 (default build/) with Ninja, -j2 unless JOBS is set.
build_project() {
  local dir="${1:-$REPO_ROOT/build}"
  log "building into $dir"
  cmake -S "$REPO_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  cmake --build "$dir" -j "${JOBS:-2}"
}

# Prints a TCP port on 127.0.0.1 that nobody listens on, starting at $1.
free_port() {
  local p="${1:-15432}"
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# Runs a command as the PostgreSQL owner: postgres when we are root (initdb
# refuses root), ourselves otherwise.
as_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DIR PORT: a private cluster in DIR (created on first use), listening on
# 127.0.0.1:PORT with its socket in DIR/socket. Exports BALLISTICS_DATABASE_URL.
pg_start() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; chmod 700 "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "initialising a private PostgreSQL cluster in $dir/data"
    as_pg_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  as_pg_owner mkdir -p "$dir/socket"
  log "starting PostgreSQL on 127.0.0.1:$port"
  as_pg_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir/socket ${PG_EXTRA_OPTS:-}" start >/dev/null \
    || { cat "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
  as_pg_owner "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname='ballistics'" | grep -q 1 \
    || as_pg_owner "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres ballistics
  export BALLISTICS_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/ballistics"
}

pg_stop() {
  local dir="$1"
  [ -f "$dir/data/postmaster.pid" ] && as_pg_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}
