# shellcheck shell=bash disable=SC2034  # variables here are used by up.sh / down.sh
# Shared helpers for infra/up.sh and infra/down.sh. Source it; do not run it.
#
# Layout of the state directory ($STATE_DIR, default <repo root>/.local):
#   bin/ferretdb            our FerretDB build (infra/ferretdb)
#   ferretdb/               FerretDB's SQLite files
#   redis/                  Redis working dir (persistence is off)
#   rabbitmq/               RabbitMQ node data (mnesia) when we start it
#   pgbouncer/              PgBouncer's configuration (transaction pooling)
#   oidc/jwks.json          the local OpenID Connect provider's signing key (kept across restarts)
#   logs/                   one log per service
#   *.pid, *.started        pid files / markers of the servers that up.sh started;
#                           down.sh stops only those.

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
STATE_DIR="${STATE_DIR:-$REPO_ROOT/.local}"
# Make it absolute: it is handed to daemons that run in other directories.
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
LOG_DIR="$STATE_DIR/logs"
mkdir -p "$LOG_DIR"
export STATE_DIR

# Standard loopback ports (fixed: the project's config and tests expect them).
PG_PORT=5432
REDIS_PORT=6379
# the response cache's own instance: maxmemory applies per instance, so the cache can never
# evict or starve the rate limiter's keys
CACHE_REDIS_PORT=6380
CACHE_REDIS_MAXMEMORY="${CACHE_REDIS_MAXMEMORY:-256mb}"
RABBIT_PORT=5672
RABBIT_MGMT_PORT=15672
MONGO_PORT=27017
# PgBouncer in transaction pooling in front of PostgreSQL (how many replicas usually reach it)
PGBOUNCER_PORT=6432
LOCALHOST=127.0.0.1
# The local OpenID Connect provider (infra/oidc, oidc-provider on Node.js): issuer
# http://127.0.0.1:$OIDC_PORT, its npm packages in infra/oidc/node_modules (git-ignored).
OIDC_PORT="${OIDC_PORT:-9400}"
OIDC_DIR="$INFRA_DIR/oidc"
export OIDC_PORT
export OIDC_JWKS_FILE="${OIDC_JWKS_FILE:-$STATE_DIR/oidc/jwks.json}"

# RabbitMQ's Erlang distribution (25672) and epmd (4369) listen on loopback only, like every
# other local server. The node is named for `localhost`, not the host name: Debian's
# /etc/hosts often maps the host name to 127.0.1.1, where a loopback-bound epmd is not.
# rabbitmqctl reads the same variables, so the CLI (and the tests) reach the same node.
export RABBITMQ_NODENAME="${RABBITMQ_NODENAME:-rabbit@localhost}"
export ERL_EPMD_ADDRESS="$LOCALHOST"
# A dead letter that at-least-once dead-lettering (the webhook delay queues) could not forward
# is tried again after this many ms (RabbitMQ's default: 3 minutes). After a restart a quorum
# queue can recover before its dead-letter exchange does, and its expired messages wait.
RABBIT_DLX_RETRY_ARGS="-rabbit dead_letter_worker_publisher_confirm_timeout 10000"
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} $RABBIT_DLX_RETRY_ARGS"
EPMD_PORT=4369
RABBIT_DIST_PORT=25672

# Debian keeps admin tools in sbin (rabbitmqctl) and Go may live in /usr/local/go.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/go/bin"
export PATH

log()  { printf '[infra] %s\n' "$*"; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die()  { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# port_open PORT [HOST]: true if something accepts TCP connections there.
port_open() {
    local port="$1" host="${2:-$LOCALHOST}"
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" >/dev/null 2>&1
}

# wait_port NAME PORT TIMEOUT_SECONDS [LOGFILE] [PID]
# Waits until the port accepts connections. On timeout (or if PID dies first)
# shows the tail of LOGFILE and fails.
wait_port() {
    local name="$1" port="$2" limit="$3" logfile="${4:-}" pid="${5:-}"
    local deadline=$((SECONDS + limit))
    while ! port_open "$port"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$logfile"
            die "$name exited before listening on $LOCALHOST:$port"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail "$logfile"
            die "$name did not listen on $LOCALHOST:$port within ${limit}s"
        fi
        sleep 0.2
    done
}

# wait_port_closed PORT TIMEOUT_SECONDS: true once nothing listens any more.
wait_port_closed() {
    local port="$1" limit="$2"
    local deadline=$((SECONDS + limit))
    while port_open "$port"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

# beyond_loopback PORT...: true if any of the ports has a listener on a non-loopback address.
beyond_loopback() {
    have ss || return 1
    local port addresses
    for port in "$@"; do
        addresses="$(ss -Hltn "sport = :$port" 2>/dev/null | awk '{print $4}')" || continue
        grep -qvE '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]):[0-9]+$' <<<"$addresses" \
            && [ -n "$addresses" ] && return 0
    done
    return 1
}

# epmd_unused: true if epmd runs with no node registered (so stopping it harms nobody).
epmd_unused() {
    have epmd || return 1
    local names
    names="$(epmd -names 2>/dev/null)" || return 1
    ! grep -q '^name ' <<<"$names"
}

show_log_tail() {
    local f="${1:-}"
    if [ -n "$f" ] && [ -f "$f" ]; then
        printf '[infra] --- last lines of %s ---\n' "$f" >&2
        tail -n 30 "$f" >&2 || true
        printf '[infra] ---\n' >&2
    fi
}

# pid_alive PIDFILE: true if the file names a running process.
pid_alive() {
    local f="$1" pid
    [ -f "$f" ] || return 1
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Run a command as the postgres OS user (Debian's cluster owner).
as_postgres() {
    if have runuser; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

# The first Debian cluster configured for port $PG_PORT, as "VERSION NAME STATUS".
debian_pg_cluster() {
    have pg_lsclusters || return 1
    pg_lsclusters --no-header 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }'
}

# apt_install PKG...: installs Debian packages non-interactively.
# Runs `apt-get update` only when there are no package lists or when the
# install fails with the current ones (stale lists).
apt_install() {
    [ "$#" -gt 0 ] || return 0
    if ! is_root || ! have apt-get; then
        die "missing: $*. Install these Debian packages (as root: apt-get install -y $*) or start the services yourself on their standard ports, then re-run."
    fi
    local created_policy=0
    # Without systemd (containers, CI), package scripts would start the Debian
    # services through /etc/init.d with system-wide data; up.sh starts its own.
    # A temporary policy-rc.d keeps apt from doing that.
    if [ ! -e /usr/sbin/policy-rc.d ] && [ ! -d /run/systemd/system ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    local rc=0
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "apt-get update (no package lists yet)"
        apt-get update -qq || rc=$?
    fi
    if [ "$rc" -eq 0 ]; then
        log "installing Debian packages: $*"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$LOG_DIR/apt.log" 2>&1; then
            log "install failed with the current package lists; running apt-get update and retrying"
            apt-get update -qq || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$LOG_DIR/apt.log" 2>&1 || rc=$?
        fi
    fi
    [ "$created_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    if [ "$rc" -ne 0 ]; then
        show_log_tail "$LOG_DIR/apt.log"
        die "apt-get install $* failed"
    fi
}
