#!/usr/bin/env bash
# Stops the servers that infra/up.sh started (known by the pid files / markers
# in $STATE_DIR). Servers that up.sh merely reused are left alone. Data in
# $STATE_DIR is kept; delete that folder to start from scratch.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# stop_pid NAME PIDFILE EXPECTED_EXE: SIGTERM, wait up to 15 s, then SIGKILL.
# Checks that the pid still belongs to EXPECTED_EXE (pids get reused).
stop_pid() {
    local name="$1" pidfile="$2" exe="$3" pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        log "$name: not running (stale pid file removed)"
        rm -f "$pidfile"
        return 0
    fi
    if [ -n "$exe" ] && [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)" != "$(readlink -f "$exe")" ]; then
        warn "$name: pid $pid is not $exe any more; leaving it alone"
        rm -f "$pidfile"
        return 0
    fi
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "$name: still running after 15s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
}

# Prometheus of `make observe` (infra/observe.sh); its data stays in $STATE_DIR/prometheus
if [ -f "$STATE_DIR/prometheus/prometheus.pid" ]; then
    stop_pid prometheus "$STATE_DIR/prometheus/prometheus.pid" "$(command -v prometheus || true)"
else
    log "prometheus: not started by infra/observe.sh; leaving it alone"
fi

# The OpenID Connect provider (node infra/oidc/provider.mjs); its keys stay in $STATE_DIR/oidc
if [ -f "$STATE_DIR/oidc.pid" ]; then
    stop_pid oidc "$STATE_DIR/oidc.pid" "$(command -v node || echo node)"
else
    log "oidc: not started by up.sh; leaving it alone"
fi

# FerretDB
if [ -f "$STATE_DIR/ferretdb.pid" ]; then
    stop_pid ferretdb "$STATE_DIR/ferretdb.pid" "$STATE_DIR/bin/ferretdb"
else
    log "ferretdb: not started by up.sh; leaving it alone"
fi

# Redis, both instances (up.sh starts them with --pidfile; redis removes the file on shutdown)
stop_redis_instance() {
    local name="$1" port="$2"
    if [ -f "$STATE_DIR/$name.pid" ]; then
        if pid_alive "$STATE_DIR/$name.pid"; then
            log "$name: stopping"
            if ! redis-cli -h "$LOCALHOST" -p "$port" shutdown nosave >/dev/null 2>&1; then
                :  # redis-cli reports an error when the connection drops; check below
            fi
            if pid_alive "$STATE_DIR/$name.pid"; then
                stop_pid "$name" "$STATE_DIR/$name.pid" "$(command -v redis-server || true)"
            fi
        fi
        rm -f "$STATE_DIR/$name.pid"
    else
        log "$name: not started by up.sh; leaving it alone"
    fi
}
stop_redis_instance redis-cache "$CACHE_REDIS_PORT"
stop_redis_instance redis "$REDIS_PORT"

# RabbitMQ (rabbitmqctl talks to $RABBITMQ_NODENAME, rabbit@localhost, with the shared cookie)
if [ -f "$STATE_DIR/rabbitmq.started" ]; then
    if port_open "$RABBIT_PORT" || timeout 20 rabbitmqctl -q status >/dev/null 2>&1; then
        log "rabbitmq: stopping"
        timeout 120 rabbitmqctl -q stop >/dev/null 2>&1 || warn "rabbitmq: rabbitmqctl stop failed"
        wait_port_closed "$RABBIT_PORT" 30 || warn "rabbitmq: port $RABBIT_PORT still open"
        # the epmd our node started outlives it; stop it once no node is registered
        if epmd_unused; then epmd -kill >/dev/null 2>&1 || true; fi
    else
        log "rabbitmq: not running"
    fi
    rm -f "$STATE_DIR/rabbitmq.started"
else
    log "rabbitmq: not started by up.sh; leaving it alone"
fi

# PgBouncer (before the PostgreSQL it fronts)
if [ -f "$STATE_DIR/pgbouncer.started" ]; then
    if [ -f "$STATE_DIR/pgbouncer/pgbouncer.pid" ]; then
        stop_pid pgbouncer "$STATE_DIR/pgbouncer/pgbouncer.pid" "$(command -v pgbouncer || true)"
    fi
    rm -f "$STATE_DIR/pgbouncer.started"
else
    log "pgbouncer: not started by up.sh; leaving it alone"
fi

# PostgreSQL (Debian cluster recorded by up.sh as "VERSION NAME")
if [ -f "$STATE_DIR/postgres.started" ]; then
    read -r pg_ver pg_name _ <"$STATE_DIR/postgres.started" || true
    if [ -n "${pg_ver:-}" ] && [ -n "${pg_name:-}" ]; then
        log "postgres: stopping Debian cluster $pg_ver $pg_name"
        pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" stop -m fast \
            || warn "postgres: pg_ctlcluster $pg_ver $pg_name stop failed (already stopped?)"
    fi
    rm -f "$STATE_DIR/postgres.started"
else
    log "postgres: not started by up.sh; leaving it alone"
fi

log "down"
