#!/usr/bin/env bash
# The rules of deploy/prometheus/rules/ as Prometheus Operator resources: one PrometheusRule
# per rules file, printed on stdout (its `spec` is the file itself, indented), so the rules
# stay in one place.
#
#   bash deploy/prometheus/kubernetes/prometheus-rules.sh | kubectl -n gateway-platform apply -f -
#
# The Prometheus resource must select them (its ruleSelector, often `release: <its name>`:
# pass such labels as arguments, e.g. `prometheus-rules.sh release=kube-prometheus-stack`).
set -euo pipefail

rules_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../rules" && pwd)"

for rules_file in "$rules_dir"/*.yml; do
    printf -- '---\napiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n'
    printf 'metadata:\n  name: gateway-platform-%s\n' "$(basename "$rules_file" .yml)"
    printf '  labels:\n    app.kubernetes.io/part-of: gateway-platform\n'
    for label in "$@"; do
        printf '    %s: "%s"\n' "${label%%=*}" "${label#*=}"
    done
    printf 'spec:\n'
    sed -e 's/^/  /' "$rules_file"
done
