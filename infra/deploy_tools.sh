#!/usr/bin/env bash
# The offline checkers of the deployment files (tests/deploy), installed once and reused:
#
#   .local/bin/kustomize           renders deploy/kubernetes/overlays/*        (Go module)
#   .local/bin/kubeconform         validates every rendered object             (Go module)
#   .local/kubernetes-schemas/     Kubernetes JSON schemas for kubeconform, from the PyPI
#                                  package kubernetes-validate, made resolvable offline by
#                                  infra/kubernetes_schemas.py
#   .local/compose-schema/         the Compose specification's JSON schema, as vendored by
#                                  the PyPI package check-jsonschema
#   promtool                       Debian's package prometheus (deploy/prometheus's tests)
#
# Each is installed only when missing or not at the version pinned below, so a second run
# only looks (well under a second). Everything it installs is printed; any failure stops it
# with a non-zero status. tests/deploy/tools.py is where the tests find these.
#
# Pins: kustomize stays at v5.7.1 (later versions need a newer Go than Debian's machines
# have); the Kubernetes schemas are those of 1.33 (the base needs >= 1.30 for the preStop
# `sleep` action; kubernetes-validate 1.37.0 ships 1.25 to 1.37).
set -euo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE_VERSION=v5.7.1
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_SCHEMA_VERSION=1.33.0
CHECK_JSONSCHEMA_VERSION=0.39.0

BIN=$PWD/.local/bin
K8S_SCHEMAS=.local/kubernetes-schemas
COMPOSE_SCHEMA=.local/compose-schema
PY=${PY:-.venv/bin/python}

say() { echo "[deploy-tools] $*"; }
die() { echo "[deploy-tools] $*" >&2; exit 1; }

[ -x "$PY" ] || die "$PY is missing: run make setup first"

# The version a Go binary was built from (its module's, as `go install m@v` recorded it).
go_binary_version() {
    go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

go_tool() {  # name module version
    local name=$1 module=$2 version=$3
    if [ -x "$BIN/$name" ] && [ "$(go_binary_version "$BIN/$name")" = "$version" ]; then
        return
    fi
    command -v go >/dev/null || die "$name needs Go to build (README.md, Requirements)"
    say "installing $name $version into .local/bin (go install, about half a minute)"
    mkdir -p "$BIN"
    # GOTOOLCHAIN=local: fail here, clearly, rather than try to download a newer Go
    GOBIN=$BIN GOTOOLCHAIN=local go install "$module@$version" \
        || die "go install $module@$version failed"
}

# One wheel from PyPI, without its dependencies, into a temporary folder; prints its path.
download_wheel() {  # requirement folder
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$2" "$1" >&2 \
        || die "pip download $1 failed"
    ls "$2"/*.whl
}

kubernetes_schemas() {
    if "$PY" infra/kubernetes_schemas.py is-current "$K8S_SCHEMAS" \
            "$KUBERNETES_VALIDATE_VERSION" "$KUBERNETES_SCHEMA_VERSION"; then
        return
    fi
    say "installing the Kubernetes $KUBERNETES_SCHEMA_VERSION schemas" \
        "(kubernetes-validate $KUBERNETES_VALIDATE_VERSION) into $K8S_SCHEMAS"
    local wheel
    wheel=$(download_wheel "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "$TMP/k8s")
    "$PY" infra/kubernetes_schemas.py extract "$wheel" "$KUBERNETES_SCHEMA_VERSION" \
        "$K8S_SCHEMAS"
}

compose_schema() {
    local stamp="check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    if [ -f "$COMPOSE_SCHEMA/compose-spec.json" ] \
            && [ "$(cat "$COMPOSE_SCHEMA/stamp" 2>/dev/null)" = "$stamp" ]; then
        return
    fi
    say "installing the Compose specification's schema ($stamp) into $COMPOSE_SCHEMA"
    local wheel
    wheel=$(download_wheel "$stamp" "$TMP/compose")
    mkdir -p "$COMPOSE_SCHEMA"
    "$PY" - "$wheel" "$COMPOSE_SCHEMA" <<'PYTHON'
import sys
import zipfile
from pathlib import Path

wheel, out = sys.argv[1], Path(sys.argv[2])
vendor = "check_jsonschema/builtin_schemas/vendor/"
with zipfile.ZipFile(wheel) as archive:
    (out / "compose-spec.json").write_bytes(archive.read(vendor + "compose-spec.json"))
    (out / "LICENSE").write_bytes(archive.read(vendor + "licenses/LICENSE.compose-spec"))
PYTHON
    echo "$stamp" > "$COMPOSE_SCHEMA/stamp"
}

install_promtool() {
    # `type -P`: the program on PATH (a shell function of the same name would answer
    # `command -v`, and once did: promtool was never installed on a fresh machine)
    type -P promtool >/dev/null && return
    say "installing promtool (Debian package prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    local install=(apt-get install -y --no-install-recommends prometheus)
    "${install[@]}" >/dev/null 2>&1 \
        || { apt-get update >/dev/null && "${install[@]}" >/dev/null; } \
        || die "apt-get install prometheus failed"
    # Only promtool is wanted: a Prometheus the package's init script may have started
    # (where no policy-rc.d stops it) would hold port 9090, which `make observe` uses.
    if [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        say "stopping the Prometheus service the package started"
        /etc/init.d/prometheus stop >/dev/null || true
    fi
    type -P promtool >/dev/null || die "the package prometheus installed no promtool"
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
kubernetes_schemas
compose_schema
install_promtool
