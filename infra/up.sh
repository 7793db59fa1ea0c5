#!/usr/bin/env bash
# Brings up the local stack without Docker (see docs/architecture.md section 5):
#   PostgreSQL :5432 (PgBouncer :6432 in front), Redis :6379, RabbitMQ :5672 (+ management :15672,
#   Prometheus metrics :15692), FerretDB :27017, the OpenID Connect provider of infra/oidc :9400
# A server already listening on its port is reused, never replaced. Missing
# Debian packages are installed when running as root. Idempotent: run it as
# often as you like. infra/down.sh stops what this script started.
#
# Env: STATE_DIR (default <repo root>/.local) holds all state, logs and pid files.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$LOG_DIR" "$STATE_DIR/bin"
log "state dir: $STATE_DIR"

PG_URL_AUTH="postgresql://gateway:gateway@$LOCALHOST:$PG_PORT/gateway_auth"

# --------------------------------------------------------------------------
# 0. Install whatever is missing for the servers that are not already up.
# --------------------------------------------------------------------------
install_missing() {
    local pkgs=()
    if ! port_open "$PG_PORT"; then
        if ! have pg_lsclusters || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
            pkgs+=(postgresql)
        fi
    fi
    # psql is needed for the role/database setup and its check, even when reusing.
    have psql || pkgs+=(postgresql-client)
    have curl || pkgs+=(curl)
    if { ! port_open "$REDIS_PORT" || ! port_open "$CACHE_REDIS_PORT"; } && ! have redis-server; then
        pkgs+=(redis-server)
    fi
    if ! port_open "$RABBIT_PORT" && ! have rabbitmq-server; then
        pkgs+=(rabbitmq-server)
    fi
    if ! port_open "$PGBOUNCER_PORT" && ! have pgbouncer; then
        pkgs+=(pgbouncer)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        apt_install "${pkgs[@]}"
    fi
}

# --------------------------------------------------------------------------
# 1. PostgreSQL (Debian cluster; its data stays in /var/lib/postgresql, which
#    is where Debian's tools keep it).
# --------------------------------------------------------------------------
start_postgres() {
    if port_open "$PG_PORT"; then
        log "postgres: reusing server on $LOCALHOST:$PG_PORT"
        return 0
    fi
    is_root || die "postgres: not running on :$PG_PORT and starting Debian's cluster needs root (pg_ctlcluster <ver> main start)"
    local cluster ver name
    cluster="$(debian_pg_cluster || true)"
    if [ -z "$cluster" ]; then
        ver="$(find /usr/lib/postgresql -maxdepth 1 -mindepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)"
        [ -n "$ver" ] || die "postgres: no PostgreSQL server found under /usr/lib/postgresql (install the Debian package postgresql)"
        log "postgres: creating cluster $ver main on port $PG_PORT"
        pg_createcluster --port "$PG_PORT" "$ver" main >"$LOG_DIR/pg_createcluster.log" 2>&1 \
            || { show_log_tail "$LOG_DIR/pg_createcluster.log"; die "pg_createcluster failed"; }
        name=main
    else
        read -r ver name _ <<<"$cluster"
    fi
    log "postgres: starting Debian cluster $ver $name"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start \
        || { show_log_tail "/var/log/postgresql/postgresql-$ver-$name.log"; die "pg_ctlcluster $ver $name start failed"; }
    echo "$ver $name" >"$STATE_DIR/postgres.started"
    wait_port postgres "$PG_PORT" 60 "/var/log/postgresql/postgresql-$ver-$name.log"
}

# Role gateway/gateway (LOGIN CREATEDB) and databases gateway_auth, gateway_project, gateway_analytics, gateway_logs.
setup_postgres_roles() {
    local cluster
    cluster="$(debian_pg_cluster || true)"
    if [ -z "$cluster" ] || [ "$(awk '{print $3}' <<<"$cluster")" != online ]; then
        warn "postgres: the server on :$PG_PORT is not a local Debian cluster; not creating role/databases (need: role gateway/gateway, databases gateway_auth, gateway_project, gateway_analytics, gateway_logs)"
        return 0
    fi
    if ! is_root; then
        warn "postgres: not root; cannot run psql as the postgres user to create role gateway and its databases"
        return 0
    fi
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gateway') THEN
        CREATE ROLE gateway LOGIN CREATEDB PASSWORD 'gateway';
    ELSE
        ALTER ROLE gateway LOGIN CREATEDB PASSWORD 'gateway';
    END IF;
END
$$;
SELECT format('CREATE DATABASE %I OWNER gateway', d)
FROM unnest(ARRAY['gateway_auth', 'gateway_project', 'gateway_analytics', 'gateway_logs']) AS d
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d)
\gexec
SQL
    # Password login over TCP must work (Debian's pg_hba allows scram-sha-256
    # from 127.0.0.1). If a local pg_hba was made stricter, add one rule for us.
    if ! PGCONNECT_TIMEOUT=5 psql -X -q -tA "$PG_URL_AUTH" -c 'select 1' >/dev/null 2>&1; then
        local hba
        hba="$(as_postgres psql -X -tA -p "$PG_PORT" -d postgres -c 'show hba_file')"
        if ! grep -q '^host[[:space:]]\+all[[:space:]]\+gateway[[:space:]]\+127.0.0.1/32' "$hba"; then
            log "postgres: adding a scram-sha-256 rule for role gateway on 127.0.0.1 to $hba"
            sed -i '1i host all gateway 127.0.0.1/32 scram-sha-256' "$hba"
            as_postgres psql -X -q -p "$PG_PORT" -d postgres -c 'select pg_reload_conf()' >/dev/null
        fi
        PGCONNECT_TIMEOUT=5 psql -X -q -tA "$PG_URL_AUTH" -c 'select 1' >/dev/null \
            || die "postgres: cannot log in as gateway over TCP ($PG_URL_AUTH); check $hba"
    fi
    log "postgres: role gateway and databases gateway_auth, gateway_project, gateway_analytics, gateway_logs ready"
}

# --------------------------------------------------------------------------
# 1b. PgBouncer on :6432 in transaction pooling, in front of that PostgreSQL (every database
# name passes through), loopback only. It refuses to run as root: it runs as `postgres`.
# --------------------------------------------------------------------------
start_pgbouncer() {
    if port_open "$PGBOUNCER_PORT"; then
        log "pgbouncer: reusing server on $LOCALHOST:$PGBOUNCER_PORT"
        return 0
    fi
    have pgbouncer || die "pgbouncer: not found (install the Debian package pgbouncer)"
    local dir="$STATE_DIR/pgbouncer"
    mkdir -p "$dir"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$LOCALHOST port=$PG_PORT

[pgbouncer]
listen_addr = $LOCALHOST
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = $LOG_DIR/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    # the password PgBouncer logs in to PostgreSQL with (clients on loopback are trusted)
    echo '"gateway" "gateway"' >"$dir/userlist.txt"
    local owner=postgres
    id "$owner" >/dev/null 2>&1 || owner="$(id -un)"
    chown -R "$owner" "$dir"
    touch "$LOG_DIR/pgbouncer.log" && chown "$owner" "$LOG_DIR/pgbouncer.log"
    log "pgbouncer: starting (transaction pooling)"
    if is_root && [ "$owner" != root ]; then
        pgbouncer -d -u "$owner" "$dir/pgbouncer.ini" \
            || { show_log_tail "$LOG_DIR/pgbouncer.log"; die "pgbouncer failed to start"; }
    else
        pgbouncer -d "$dir/pgbouncer.ini" \
            || { show_log_tail "$LOG_DIR/pgbouncer.log"; die "pgbouncer failed to start"; }
    fi
    touch "$STATE_DIR/pgbouncer.started"
    wait_port pgbouncer "$PGBOUNCER_PORT" 30 "$LOG_DIR/pgbouncer.log"
}

# --------------------------------------------------------------------------
# 2. Redis (no persistence; data dir under the state dir).
# --------------------------------------------------------------------------
start_redis() {
    start_redis_instance redis "$REDIS_PORT"
    # the response cache: its own memory ceiling, least recently used entries go first
    start_redis_instance redis-cache "$CACHE_REDIS_PORT" \
        --maxmemory "$CACHE_REDIS_MAXMEMORY" --maxmemory-policy allkeys-lru
}

# start_redis_instance NAME PORT [EXTRA redis-server ARGS...]
start_redis_instance() {
    local name="$1" port="$2"
    shift 2
    if port_open "$port"; then
        log "$name: reusing server on $LOCALHOST:$port"
        return 0
    fi
    have redis-server || die "$name: redis-server not found (install the Debian package redis-server)"
    mkdir -p "$STATE_DIR/$name"
    rm -f "$STATE_DIR/$name.pid"
    log "$name: starting"
    redis-server --daemonize yes --bind "$LOCALHOST" --port "$port" \
        --save "" --appendonly no --dir "$STATE_DIR/$name" \
        --logfile "$LOG_DIR/$name.log" --pidfile "$STATE_DIR/$name.pid" "$@" \
        || { show_log_tail "$LOG_DIR/$name.log"; die "$name failed to start"; }
    wait_port "$name" "$port" 30 "$LOG_DIR/$name.log"
}

# --------------------------------------------------------------------------
# 3. RabbitMQ (+ management plugin).
#
# Debian's rabbitmq-server/rabbitmqctl are wrappers that, run as root, switch
# to the `rabbitmq` user (HOME=/var/lib/rabbitmq). So server and CLI share
# the Erlang cookie /var/lib/rabbitmq/.erlang.cookie, and with RABBITMQ_NODENAME
# (rabbit@localhost, lib.sh) a `rabbitmqctl -n rabbit@localhost ...` (e.g.
# close_all_connections in tests) reaches our node. The node's data, logs,
# config and enabled-plugins file live in $STATE_DIR/rabbitmq and
# $LOG_DIR/rabbitmq (owned by the rabbitmq user); only the cookie stays in
# /var/lib/rabbitmq. Its distribution port and epmd listen on loopback only.
# The rabbitmq_prometheus plugin serves the broker's metrics on loopback:15692 (`make
# observe` scrapes its /metrics/detailed for per-queue depth, unacked and consumers).
# --------------------------------------------------------------------------
RABBIT_DIR="$STATE_DIR/rabbitmq"
RABBIT_PROMETHEUS_PORT=15692
export RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia"
export RABBITMQ_LOG_BASE="$LOG_DIR/rabbitmq"
export RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins"

rabbit_mgmt_ok() {
    curl -fsS -m 5 -u guest:guest "http://$LOCALHOST:$RABBIT_MGMT_PORT/api/overview" >/dev/null 2>&1
}

# A node that an older up.sh started had epmd and its distribution port on every interface:
# stop it (and its epmd) so that it starts again bound to loopback.
restart_exposed_rabbitmq() {
    [ -f "$STATE_DIR/rabbitmq.started" ] && port_open "$RABBIT_PORT" || return 0
    beyond_loopback "$EPMD_PORT" "$RABBIT_DIST_PORT" || return 0
    log "rabbitmq: the node we started listens beyond loopback (epmd/distribution); restarting it"
    local name
    for name in "$RABBITMQ_NODENAME" "rabbit@$(hostname -s)" "rabbit@$(hostname)"; do
        timeout 60 rabbitmqctl -q -n "$name" stop >/dev/null 2>&1 && break
    done
    wait_port_closed "$RABBIT_PORT" 30 || die "rabbitmq: could not stop the exposed node on :$RABBIT_PORT"
    rm -f "$STATE_DIR/rabbitmq.started"
}

# epmd outlives the nodes that start it: one left listening beyond loopback with no node
# registered is stopped, so that our node starts a loopback one.
stop_exposed_epmd() {
    beyond_loopback "$EPMD_PORT" || return 0
    if epmd_unused; then
        log "epmd: listening beyond loopback with no node registered; stopping it"
        epmd -kill >/dev/null 2>&1 || true
        wait_port_closed "$EPMD_PORT" 10 || warn "epmd: still listening on :$EPMD_PORT"
    else
        warn "epmd listens beyond loopback for nodes we did not start; leaving it alone"
    fi
}

start_rabbitmq() {
    restart_exposed_rabbitmq
    if port_open "$RABBIT_PORT"; then
        log "rabbitmq: reusing server on $LOCALHOST:$RABBIT_PORT"
        if ! port_open "$RABBIT_MGMT_PORT" && have rabbitmq-plugins; then
            # Reused node without the management UI: try to enable it (its own
            # enabled_plugins file, so without our variables).
            log "rabbitmq: enabling rabbitmq_management on the reused node"
            env -u RABBITMQ_ENABLED_PLUGINS_FILE -u RABBITMQ_CONFIG_FILE \
                -u RABBITMQ_MNESIA_BASE -u RABBITMQ_LOG_BASE \
                timeout 120 rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 \
                || warn "rabbitmq: could not enable rabbitmq_management on the reused node"
        fi
        return 0
    fi
    have rabbitmq-server || die "rabbitmq: rabbitmq-server not found (install the Debian package rabbitmq-server)"
    stop_exposed_epmd
    mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    cat >"$RABBITMQ_CONFIG_FILE" <<EOF
# Written by infra/up.sh: loopback only.
listeners.tcp.default = $LOCALHOST:$RABBIT_PORT
management.tcp.ip = $LOCALHOST
management.tcp.port = $RABBIT_MGMT_PORT
prometheus.tcp.ip = $LOCALHOST
prometheus.tcp.port = $RABBIT_PROMETHEUS_PORT
EOF
    # Pre-seeding the plugin list makes the UI and the metrics start with the node; the
    # rabbitmq-plugins calls below are then quick checks that they are enabled (and enable
    # them on a node whose list predates one of them).
    [ -s "$RABBITMQ_ENABLED_PLUGINS_FILE" ] \
        || echo '[rabbitmq_management,rabbitmq_prometheus].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    if id rabbitmq >/dev/null 2>&1; then
        chown -R rabbitmq:rabbitmq "$RABBIT_DIR" "$RABBITMQ_LOG_BASE"
    fi
    log "rabbitmq: starting (data in $RABBIT_DIR)"
    if is_root && id rabbitmq >/dev/null 2>&1 && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
        # Debian's wrapper starts the node through `su`, which applies the PAM limit of 1024
        # open files. RabbitMQ's file handle cache then runs dry after a few hundred queues
        # and the node silently stops accepting AMQP connections. Start it the same way, but
        # with the limit raised to the hard limit (at most 65536).
        local nofile
        nofile="$(ulimit -Hn)"
        if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then nofile=65536; fi
        (cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c \
            "ulimit -n $nofile 2>/dev/null; exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached") \
            >"$LOG_DIR/rabbitmq-start.log" 2>&1 \
            || { show_log_tail "$LOG_DIR/rabbitmq-start.log"; die "rabbitmq-server -detached failed"; }
    else
        rabbitmq-server -detached >"$LOG_DIR/rabbitmq-start.log" 2>&1 \
            || { show_log_tail "$LOG_DIR/rabbitmq-start.log"; die "rabbitmq-server -detached failed"; }
    fi
    touch "$STATE_DIR/rabbitmq.started"
}

# Waits for a node that we started (booting takes 5-20 s).
await_rabbitmq() {
    [ -f "$STATE_DIR/rabbitmq.started" ] || return 0
    port_open "$RABBIT_PORT" && return 0
    log "rabbitmq: waiting for the node to boot"
    local deadline=$((SECONDS + 120))
    until timeout 30 rabbitmqctl -q await_startup --timeout 20 >>"$LOG_DIR/rabbitmq-start.log" 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail "$LOG_DIR/rabbitmq-start.log"
            local f
            for f in "$RABBITMQ_LOG_BASE"/*.log; do show_log_tail "$f"; done
            die "rabbitmq did not start within 120s"
        fi
        sleep 1
    done
    wait_port rabbitmq "$RABBIT_PORT" 30 "$LOG_DIR/rabbitmq-start.log"
}

enable_rabbit_mgmt() {
    rabbit_mgmt_ok && return 0
    # Only for a node we started (a reused one was handled above).
    [ -f "$STATE_DIR/rabbitmq.started" ] || return 0
    log "rabbitmq: enabling rabbitmq_management"
    timeout 120 rabbitmq-plugins enable rabbitmq_management >>"$LOG_DIR/rabbitmq-start.log" 2>&1 \
        || { show_log_tail "$LOG_DIR/rabbitmq-start.log"; die "rabbitmq-plugins enable rabbitmq_management failed"; }
}

rabbit_prometheus_ok() {
    curl -fsS -m 5 -o /dev/null "http://$LOCALHOST:$RABBIT_PROMETHEUS_PORT/metrics/detailed?family=queue_consumer_count" 2>/dev/null
}

# rabbitmq_prometheus on a node we started, running or just booted, without a restart. Its
# listener settings are read from rabbitmq.conf only at boot and the plugin's default is
# every interface: a node that booted before the plugin was in our configuration gets the
# loopback listener put into its application environment first (the plugin's .app file has
# no default that would override it).
enable_rabbit_prometheus() {
    rabbit_prometheus_ok && return 0
    if [ ! -f "$STATE_DIR/rabbitmq.started" ]; then
        warn "rabbitmq: the reused node serves no metrics on :$RABBIT_PROMETHEUS_PORT; make observe needs its rabbitmq_prometheus plugin there (prometheus.tcp.ip = $LOCALHOST, prometheus.tcp.port = $RABBIT_PROMETHEUS_PORT in its rabbitmq.conf)"
        return 0
    fi
    log "rabbitmq: enabling rabbitmq_prometheus on $LOCALHOST:$RABBIT_PROMETHEUS_PORT"
    { timeout 60 rabbitmqctl -q eval \
        "application:set_env(rabbitmq_prometheus, tcp_config, [{ip, \"$LOCALHOST\"}, {port, $RABBIT_PROMETHEUS_PORT}])." \
        && timeout 120 rabbitmq-plugins enable rabbitmq_prometheus; } >>"$LOG_DIR/rabbitmq-start.log" 2>&1 \
        || { show_log_tail "$LOG_DIR/rabbitmq-start.log"; die "rabbitmq-plugins enable rabbitmq_prometheus failed"; }
    local deadline=$((SECONDS + 30))
    until rabbit_prometheus_ok; do
        [ "$SECONDS" -ge "$deadline" ] && die "rabbitmq: no metrics on http://$LOCALHOST:$RABBIT_PROMETHEUS_PORT/metrics within 30s of enabling rabbitmq_prometheus"
        sleep 0.5
    done
}

wait_rabbit_mgmt() {
    local deadline=$((SECONDS + 60))
    until rabbit_mgmt_ok; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "rabbitmq: management API http://$LOCALHOST:$RABBIT_MGMT_PORT/api/overview did not answer with guest:guest within 60s"
            return 0
        fi
        sleep 0.5
    done
}

# --------------------------------------------------------------------------
# 4. FerretDB (MongoDB wire protocol on SQLite), our build of infra/ferretdb.
# --------------------------------------------------------------------------
FERRET_SRC="$INFRA_DIR/ferretdb"
FERRET_BIN="$STATE_DIR/bin/ferretdb"

build_ferretdb() {
    local stale=0 f
    if [ ! -x "$FERRET_BIN" ]; then
        stale=1
    else
        for f in "$FERRET_SRC/main.go" "$FERRET_SRC/go.mod" "$FERRET_SRC/go.sum"; do
            [ "$f" -nt "$FERRET_BIN" ] && stale=1
        done
    fi
    [ "$stale" -eq 1 ] || return 0
    have go || die "ferretdb: Go (1.24 or newer) is needed to build infra/ferretdb; put it on PATH (e.g. /usr/local/go/bin)"
    if [ -x "$FERRET_BIN" ]; then
        log "rebuilding FerretDB (infra/ferretdb changed)"
    else
        log "building FerretDB (first run only, a few minutes)"
    fi
    # -mod=mod tolerates a go.sum that lags behind; the default GOPATH/GOCACHE
    # (under $HOME) are fine for root and for normal users.
    (cd "$FERRET_SRC" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" go build -trimpath -o "$FERRET_BIN.tmp" .) \
        >"$LOG_DIR/ferretdb-build.log" 2>&1 \
        || { show_log_tail "$LOG_DIR/ferretdb-build.log"; die "building FerretDB failed"; }
    mv -f "$FERRET_BIN.tmp" "$FERRET_BIN"
}

start_ferretdb() {
    if port_open "$MONGO_PORT"; then
        log "ferretdb: reusing server on $LOCALHOST:$MONGO_PORT"
        return 0
    fi
    build_ferretdb
    mkdir -p "$STATE_DIR/ferretdb"
    rm -f "$STATE_DIR/ferretdb.pid"
    log "ferretdb: starting"
    DO_NOT_TRACK=1 nohup "$FERRET_BIN" -listen "$LOCALHOST:$MONGO_PORT" -dir "$STATE_DIR/ferretdb" \
        </dev/null >>"$LOG_DIR/ferretdb.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE_DIR/ferretdb.pid"
    wait_port ferretdb "$MONGO_PORT" 60 "$LOG_DIR/ferretdb.log" "$pid"
}

# --------------------------------------------------------------------------
# 5. The local OpenID Connect provider (infra/oidc/provider.mjs: oidc-provider on Node.js,
#    development login and consent pages, any login). Its npm packages go to
#    infra/oidc/node_modules (git-ignored), its signing key to $OIDC_JWKS_FILE.
# --------------------------------------------------------------------------
OIDC_URL="http://$LOCALHOST:$OIDC_PORT"
# written after a successful `npm ci` (which empties node_modules first)
OIDC_STAMP="$OIDC_DIR/node_modules/.installed"

oidc_discovery_ok() {
    [ "$(curl -sS -m 2 -o /dev/null -w '%{http_code}' \
        "$OIDC_URL/.well-known/openid-configuration" 2>/dev/null)" = 200 ]
}

# npm ci when the packages are missing or package.json / package-lock.json changed since.
install_oidc() {
    if [ -f "$OIDC_STAMP" ] && [ ! "$OIDC_DIR/package-lock.json" -nt "$OIDC_STAMP" ] \
        && [ ! "$OIDC_DIR/package.json" -nt "$OIDC_STAMP" ]; then
        return 0
    fi
    have npm || die "oidc: npm not found (infra/oidc needs Node.js 20.18 or newer with npm)"
    log "oidc: installing oidc-provider (npm ci in infra/oidc)"
    (cd "$OIDC_DIR" && npm ci --omit=dev --no-audit --no-fund) >"$LOG_DIR/oidc-npm.log" 2>&1 \
        || { show_log_tail "$LOG_DIR/oidc-npm.log"; die "oidc: npm ci failed"; }
    touch "$OIDC_STAMP"
}

start_oidc() {
    if port_open "$OIDC_PORT"; then
        if oidc_discovery_ok; then
            log "oidc: reusing provider on $OIDC_URL"
        else
            warn "oidc: something listens on $LOCALHOST:$OIDC_PORT but serves no $OIDC_URL/.well-known/openid-configuration; leaving it alone"
        fi
        return 0
    fi
    have node || die "oidc: node not found (infra/oidc needs Node.js 20.18 or newer with npm)"
    local old
    old="$(cat "$STATE_DIR/oidc.pid" 2>/dev/null || true)"
    if [ -n "$old" ] && [ "$(readlink -f "/proc/$old/exe" 2>/dev/null || true)" = "$(readlink -f "$(command -v node)")" ]; then
        die "oidc: the provider up.sh started earlier (pid $old) still runs, not on :$OIDC_PORT; stop it first (infra/down.sh)"
    fi
    install_oidc
    rm -f "$STATE_DIR/oidc.pid"
    log "oidc: starting"
    nohup node "$OIDC_DIR/provider.mjs" </dev/null >>"$LOG_DIR/oidc.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE_DIR/oidc.pid"
    local deadline=$((SECONDS + 30))
    until oidc_discovery_ok; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$LOG_DIR/oidc.log"
            rm -f "$STATE_DIR/oidc.pid"
            die "oidc: the provider exited before serving $OIDC_URL/.well-known/openid-configuration"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail "$LOG_DIR/oidc.log"
            die "oidc: $OIDC_URL/.well-known/openid-configuration did not answer 200 within 30s"
        fi
        sleep 0.2
    done
}

# --------------------------------------------------------------------------
start_all=$SECONDS
install_missing
start_postgres
setup_postgres_roles
start_pgbouncer
start_redis
# RabbitMQ boots in the background while FerretDB is built/started.
start_rabbitmq
start_ferretdb
start_oidc
await_rabbitmq
enable_rabbit_mgmt
wait_rabbit_mgmt
enable_rabbit_prometheus
log "up in $((SECONDS - start_all))s: postgres $PG_URL_AUTH | redis redis://$LOCALHOST:$REDIS_PORT/0 (cache redis://$LOCALHOST:$CACHE_REDIS_PORT/0) | rabbitmq amqp://guest:guest@$LOCALHOST:$RABBIT_PORT/ (UI http://$LOCALHOST:$RABBIT_MGMT_PORT, metrics :$RABBIT_PROMETHEUS_PORT) | pgbouncer postgresql://gateway:gateway@$LOCALHOST:$PGBOUNCER_PORT/<database> (transaction pooling) | mongodb mongodb://$LOCALHOST:$MONGO_PORT/ (FerretDB) | oidc $OIDC_URL (client ${OIDC_CLIENT_ID:-gateway-platform}, any login)"
