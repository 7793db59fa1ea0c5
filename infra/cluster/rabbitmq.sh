#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster for the scale-out tests (docs/architecture.md section 5):
#   gw1@localhost  AMQP 127.0.0.1:5681  management http://127.0.0.1:15681  distribution 25681  metrics :15693
#   gw2@localhost  AMQP 127.0.0.1:5682  management http://127.0.0.1:15682  distribution 25682  metrics :15694
#   gw3@localhost  AMQP 127.0.0.1:5683  management http://127.0.0.1:15683  distribution 25683  metrics :15695
# with an epmd of its own on 127.0.0.1:4381, so the cluster never mixes with the local node
# rabbit@localhost (epmd 4369). Everything listens on loopback only; state lives under
# .local/cluster/rabbitmq/. The nodes share the local node's Erlang cookie: Debian's wrappers
# run every RabbitMQ command as the rabbitmq user with HOME=/var/lib/rabbitmq.
#
#   rabbitmq.sh up               start (or reuse) the three nodes, join them, enable the UI and
#                                the rabbitmq_prometheus metrics (a running node without a restart)
#   rabbitmq.sh down             stop the nodes this script started
#   rabbitmq.sh stop-node gwN    stop one node (the failover tests)
#   rabbitmq.sh ctl gwN ARGS...  rabbitmqctl against one node
# Idempotent: `up` starts only the nodes that are not running and joins only those that are
# not members yet.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CLUSTER_DIR="$STATE_DIR/cluster/rabbitmq"
NODES=(gw1 gw2 gw3)
AMQP_BASE=5680
MGMT_BASE=15680
DIST_BASE=25680
# rabbitmq_prometheus: 15692 is the local node's (infra/up.sh), so the cluster's start above it
PROMETHEUS_BASE=15692
export ERL_EPMD_PORT=4381
export ERL_EPMD_ADDRESS="$LOCALHOST"
# the CLI's own short-lived node on loopback too
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
# lib.sh points these at the local node; every command here names its node explicitly
unset RABBITMQ_NODENAME

index_of() { local n="${1#gw}"; echo "$n"; }
amqp_port() { echo $((AMQP_BASE + $(index_of "$1"))); }
mgmt_port() { echo $((MGMT_BASE + $(index_of "$1"))); }
dist_port() { echo $((DIST_BASE + $(index_of "$1"))); }
prometheus_port() { echo $((PROMETHEUS_BASE + $(index_of "$1"))); }
node_name() { echo "$1@localhost"; }

ctl() {
    local node="$1"
    shift
    timeout 90 rabbitmqctl -q -n "$(node_name "$node")" "$@"
}

node_env() {
    local node="$1" dir="$CLUSTER_DIR/$1"
    export RABBITMQ_NODENAME
    RABBITMQ_NODENAME="$(node_name "$node")"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_DIST_PORT
    RABBITMQ_DIST_PORT="$(dist_port "$node")"
    # Schedulers that do not spin while idle: four nodes share two cores with the tests.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none $RABBIT_DLX_RETRY_ARGS"
}

start_node() {
    local node="$1" dir="$CLUSTER_DIR/$1" port
    port="$(amqp_port "$node")"
    if port_open "$port"; then
        return 0
    fi
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<EOF
# Written by infra/cluster/rabbitmq.sh: loopback only.
listeners.tcp.default = $LOCALHOST:$port
management.tcp.ip = $LOCALHOST
management.tcp.port = $(mgmt_port "$node")
prometheus.tcp.ip = $LOCALHOST
prometheus.tcp.port = $(prometheus_port "$node")
EOF
    [ -s "$dir/enabled_plugins" ] || echo '[rabbitmq_management,rabbitmq_prometheus].' >"$dir/enabled_plugins"
    chmod 755 "$STATE_DIR/cluster" "$CLUSTER_DIR"
    if id rabbitmq >/dev/null 2>&1; then
        chown -R rabbitmq:rabbitmq "$dir"
    fi
    log "rabbitmq cluster: starting $(node_name "$node") (data in $dir)"
    (
        node_env "$node"
        if is_root && id rabbitmq >/dev/null 2>&1 && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
            # as infra/up.sh: through su, with the open-file limit raised past PAM's 1024
            local nofile
            nofile="$(ulimit -Hn)"
            if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then nofile=65536; fi
            cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c \
                "ulimit -n $nofile 2>/dev/null; exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached"
        else
            rabbitmq-server -detached
        fi
    ) >"$dir/start.log" 2>&1 || { show_log_tail "$dir/start.log"; die "rabbitmq cluster: $node failed to start"; }
    touch "$CLUSTER_DIR/$node.started"
}

await_node() {
    local node="$1" deadline=$((SECONDS + 120))
    until ctl "$node" await_startup --timeout 20 >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            local f
            for f in "$CLUSTER_DIR/$node/start.log" "$CLUSTER_DIR/$node"/log/*.log; do show_log_tail "$f"; done
            die "rabbitmq cluster: $node did not start within 120s"
        fi
        sleep 1
    done
    wait_port "$node" "$(amqp_port "$node")" 30 "$CLUSTER_DIR/$node/start.log"
}

# member NODE OTHER: true if NODE's cluster already includes OTHER
member() {
    ctl "$1" cluster_status --formatter json 2>/dev/null \
        | grep -q "\"$(node_name "$2")\""
}

join_node() {
    local node="$1" seed="$2"
    member "$node" "$seed" && return 0
    log "rabbitmq cluster: joining $(node_name "$node") to $(node_name "$seed")"
    # 3.10 logs harmless "tracked connection table" errors while a node joins
    { ctl "$node" stop_app && ctl "$node" join_cluster "$(node_name "$seed")" \
        && ctl "$node" start_app; } >>"$CLUSTER_DIR/$node/start.log" 2>&1 \
        || { show_log_tail "$CLUSTER_DIR/$node/start.log"; die "rabbitmq cluster: $node could not join $seed"; }
}

mgmt_ok() {
    curl -fsS -m 5 -u guest:guest "http://$LOCALHOST:$(mgmt_port "$1")/api/overview" >/dev/null 2>&1
}

prometheus_ok() {
    curl -fsS -m 5 -o /dev/null "http://$LOCALHOST:$(prometheus_port "$1")/metrics/detailed?family=queue_consumer_count" 2>/dev/null
}

# As infra/up.sh: rabbitmq.conf is read at boot only and the plugin's default listener is every
# interface, so a node that booted before the plugin was configured gets its loopback listener
# in the application environment first; then the plugin starts on the running node.
enable_prometheus() {
    local node="$1"
    prometheus_ok "$node" && return 0
    log "rabbitmq cluster: enabling rabbitmq_prometheus on $(node_name "$node") (:$(prometheus_port "$node"))"
    {
        ctl "$node" eval "application:set_env(rabbitmq_prometheus, tcp_config, [{ip, \"$LOCALHOST\"}, {port, $(prometheus_port "$node")}])." \
            && (node_env "$node"; timeout 120 rabbitmq-plugins -q -n "$(node_name "$node")" enable rabbitmq_prometheus)
    } >>"$CLUSTER_DIR/$node/start.log" 2>&1 \
        || { show_log_tail "$CLUSTER_DIR/$node/start.log"; die "rabbitmq cluster: enabling rabbitmq_prometheus on $node failed"; }
    local deadline=$((SECONDS + 30))
    until prometheus_ok "$node"; do
        [ "$SECONDS" -ge "$deadline" ] && die "rabbitmq cluster: no metrics from $node on :$(prometheus_port "$node") within 30s"
        sleep 0.5
    done
}

up() {
    have rabbitmq-server || apt_install rabbitmq-server
    have curl || apt_install curl
    mkdir -p "$CLUSTER_DIR"
    local node
    # booted in parallel: each takes 5-20 s on two cores
    for node in "${NODES[@]}"; do start_node "$node"; done
    for node in "${NODES[@]}"; do await_node "$node"; done
    for node in "${NODES[@]:1}"; do join_node "$node" "${NODES[0]}"; done
    for node in "${NODES[@]}"; do
        local deadline=$((SECONDS + 60))
        until mgmt_ok "$node"; do
            [ "$SECONDS" -ge "$deadline" ] && die "rabbitmq cluster: management API of $node not answering on :$(mgmt_port "$node")"
            sleep 0.5
        done
        enable_prometheus "$node"
    done
    local urls="" n
    for n in "${NODES[@]}"; do urls+="${urls:+,}amqp://guest:guest@$LOCALHOST:$(amqp_port "$n")/"; done
    log "rabbitmq cluster up: $(for n in "${NODES[@]}"; do printf '%s AMQP :%s UI :%s metrics :%s | ' "$(node_name "$n")" "$(amqp_port "$n")" "$(mgmt_port "$n")" "$(prometheus_port "$n")"; done)AMQP_URL=$urls"
}

stop_node() {
    local node="$1"
    if port_open "$(amqp_port "$node")" || ctl "$node" status >/dev/null 2>&1; then
        log "rabbitmq cluster: stopping $(node_name "$node")"
        ctl "$node" stop >/dev/null 2>&1 || warn "rabbitmq cluster: rabbitmqctl stop $node failed"
        wait_port_closed "$(amqp_port "$node")" 30 || warn "rabbitmq cluster: $node still listening"
    fi
}

down() {
    local node
    for node in "${NODES[@]}"; do
        if [ -f "$CLUSTER_DIR/$node.started" ]; then
            stop_node "$node"
            rm -f "$CLUSTER_DIR/$node.started"
        fi
    done
    # the cluster's own epmd outlives its nodes; stop it once none is registered
    if have epmd && port_open "$ERL_EPMD_PORT" && epmd_unused; then
        epmd -kill >/dev/null 2>&1 || true
    fi
    log "rabbitmq cluster: down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    stop-node) stop_node "${2:?node name, e.g. gw1}" ;;
    ctl) shift; node="${1:?node name}"; shift; ctl "$node" "$@" ;;
    *) die "usage: $0 up|down|stop-node gwN|ctl gwN ARGS..." ;;
esac
