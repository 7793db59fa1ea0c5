#!/usr/bin/env bash
# Redis in its two scaled-out shapes, on loopback, for tests/cluster (docs/architecture.md
# section 5):
#   state cluster   7001-7006  Redis Cluster, 3 masters with 1 replica each (REDIS_CLUSTER_NODES)
#   cache cluster   7101-7103  Redis Cluster, 3 masters (CACHE_REDIS_CLUSTER_NODES)
#   sentinel set    7201-7203  one primary (7201 at first) and 2 replicas, watched by
#                   26381-26383  3 sentinels as `mymaster` (REDIS_SENTINELS)
# Usage: infra/cluster/redis.sh up|down. `up` reuses whatever already runs (and re-forms a
# cluster from its nodes.conf after a `down`); `down` stops only what this script started.
# State: .local/cluster/redis/<port>/ (config, nodes.conf, pid, log).
set -euo pipefail
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

HERE="$STATE_DIR/cluster/redis"
STATE_PORTS=(7001 7002 7003 7004 7005 7006)
CACHE_PORTS=(7101 7102 7103)
SENTINEL_DATA_PORTS=(7201 7202 7203)
SENTINEL_PORTS=(26381 26382 26383)
MASTER_NAME=mymaster
# short, so a dead master is replaced within seconds (tests fail one over)
NODE_TIMEOUT_MS=2000

cli() { redis-cli -h "$LOCALHOST" -p "$1" "${@:2}"; }

# start_node PORT KIND: KIND is cluster, primary, replica or sentinel
start_node() {
    local port="$1" kind="$2" dir="$HERE/$1"
    mkdir -p "$dir"
    if port_open "$port"; then
        return 0
    fi
    local conf="$dir/redis.conf"
    # written once: sentinels and Redis rewrite their file as roles change (a failover
    # must survive a restart)
    if [ ! -f "$conf" ]; then
        {
            echo "bind $LOCALHOST"
            echo "port $port"
            echo "dir $dir"
            if [ "$kind" != sentinel ]; then
                echo "save \"\""
                echo "appendonly no"
            fi
            case "$kind" in
                cluster)
                    echo "cluster-enabled yes"
                    echo "cluster-config-file nodes.conf"
                    echo "cluster-node-timeout $NODE_TIMEOUT_MS"
                    ;;
                replica) echo "replicaof $LOCALHOST ${SENTINEL_DATA_PORTS[0]}" ;;
                sentinel)
                    echo "sentinel monitor $MASTER_NAME $LOCALHOST ${SENTINEL_DATA_PORTS[0]} 2"
                    echo "sentinel down-after-milliseconds $MASTER_NAME 1000"
                    echo "sentinel failover-timeout $MASTER_NAME 5000"
                    echo "sentinel parallel-syncs $MASTER_NAME 1"
                    ;;
            esac
        } >"$conf"
    fi
    local extra=()
    [ "$kind" = sentinel ] && extra=(--sentinel)
    redis-server "$conf" "${extra[@]}" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log"
    touch "$dir/started"
    wait_port "redis $port" "$port" 20 "$dir/redis.log"
}

# form_cluster NAME REPLICAS PORT...: creates the cluster unless its nodes already form one
form_cluster() {
    local name="$1" replicas="$2"
    shift 2
    local first="$1" deadline=$((SECONDS + 30)) known
    known="$(cli "$first" cluster info | awk -F: '/^cluster_known_nodes/ {print $2}' | tr -d '\r')"
    if [ "${known:-1}" -lt "$#" ]; then
        local nodes=() port
        for port in "$@"; do
            # a node that knows others (a half-formed earlier attempt) starts over empty
            cli "$port" flushall >/dev/null
            cli "$port" cluster reset hard >/dev/null
            nodes+=("$LOCALHOST:$port")
        done
        log "forming $name cluster on ports $*"
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" \
            --cluster-yes >"$HERE/$name-create.log" 2>&1 \
            || { show_log_tail "$HERE/$name-create.log"; die "could not form the $name cluster"; }
    fi
    until cli "$first" cluster info | grep -q '^cluster_state:ok'; do
        [ "$SECONDS" -ge "$deadline" ] && die "the $name cluster is not ok within 30 s"
        sleep 0.2
    done
}

up() {
    have redis-server && have redis-cli || apt_install redis-server redis-tools
    mkdir -p "$HERE"
    local port
    for port in "${STATE_PORTS[@]}" "${CACHE_PORTS[@]}"; do start_node "$port" cluster; done
    start_node "${SENTINEL_DATA_PORTS[0]}" primary
    for port in "${SENTINEL_DATA_PORTS[@]:1}"; do start_node "$port" replica; done
    for port in "${SENTINEL_PORTS[@]}"; do start_node "$port" sentinel; done
    form_cluster state 1 "${STATE_PORTS[@]}"
    form_cluster cache 0 "${CACHE_PORTS[@]}"
    local deadline=$((SECONDS + 30))
    until [ "$(cli "${SENTINEL_PORTS[0]}" sentinel master "$MASTER_NAME" 2>/dev/null \
            | grep -A1 '^num-other-sentinels$' | tail -n1)" = 2 ]; do
        [ "$SECONDS" -ge "$deadline" ] && die "the sentinels did not find each other within 30 s"
        sleep 0.2
    done
    local primary
    primary="$(cli "${SENTINEL_PORTS[0]}" sentinel get-master-addr-by-name "$MASTER_NAME" \
        | paste -sd: -)"
    log "redis: state cluster $LOCALHOST:7001-7006 (3 masters + 3 replicas)," \
        "cache cluster $LOCALHOST:7101-7103 (3 masters)," \
        "sentinel master $MASTER_NAME at $primary (replicas of 7201-7203)," \
        "sentinels $LOCALHOST:26381-26383"
}

down() {
    local port dir
    for port in "${SENTINEL_PORTS[@]}" "${STATE_PORTS[@]}" "${CACHE_PORTS[@]}" \
            "${SENTINEL_DATA_PORTS[@]}"; do
        dir="$HERE/$port"
        [ -f "$dir/started" ] || continue
        if pid_alive "$dir/redis.pid"; then
            kill "$(cat "$dir/redis.pid")"
            wait_port_closed "$port" 10 || warn "redis $port still listens"
        fi
        rm -f "$dir/started"
    done
    log "redis cluster, cache cluster and sentinels stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) die "usage: $0 up|down" ;;
esac
