# Two commands matter: `make run` (the whole stack, ready to use) and `make test`.
# Everything else is a building block of those two.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

# `make run` uses the development profile: insecure built-in secrets, allowed only there, and
# mail delivered to the SMTP sink that writes messages to .local/mail/.
# make run signs in with the local OpenID provider of `make infra` (infra/oidc) as `local`
LOCAL_OIDC := OAUTH_PROVIDERS=$${OAUTH_PROVIDERS:-local} \
	OAUTH_LOCAL_ISSUER=$${OAUTH_LOCAL_ISSUER:-http://127.0.0.1:9400} \
	OAUTH_LOCAL_CLIENT_ID=$${OAUTH_LOCAL_CLIENT_ID:-gateway-platform} \
	OAUTH_LOCAL_CLIENT_SECRET=$${OAUTH_LOCAL_CLIENT_SECRET:-local-dev-secret}
DEV_ENV := APP_ENV=development SMTP_URL=$${SMTP_URL:-smtp://127.0.0.1:1025} SMTP_SINK_DIR=.local/mail \
	$(LOCAL_OIDC)

.PHONY: help setup infra cluster run run-cluster test test-unit lint docs stop clean admin reseal-webhook-secrets bench bench-ab browser \
	deploy-tools observe

help:
	@echo "make run     start infrastructure and all five services (Ctrl-C stops them)"
	@echo "make run-cluster  the same scaled out: 2 gateways (3000, 3001), 2 of each service,"
	@echo "             on the local clusters (make cluster) and PgBouncer"
	@echo "make test    start infrastructure, then run every test"
	@echo "make infra   install (if missing) and start PostgreSQL, Redis, RabbitMQ, FerretDB and"
	@echo "             the local OpenID provider (http://127.0.0.1:9400)"
	@echo "make bench   throughput/latency table of the gateway against baselines"
	@echo "make observe Prometheus (http://127.0.0.1:9090) with the alert rules, watching make run's stack"
	@echo "make lint    ruff, then mypy --strict over every package"
	@echo "make docs    rewrite the tables of docs/ generated from the route table"
	@echo "make stop    stop the servers that make infra started"
	@echo "make clean   stop them and delete all local state (.local/)"

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is required (found $$($(PYTHON) --version))"; exit 1; }
	@echo "[setup] creating $(VENV) and installing dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(INSTALLED)

infra:
	@bash infra/up.sh

run: setup infra
	@echo ""
	@echo "  gateway          http://localhost:3000       (health: /health)"
	@echo "  API docs         http://localhost:3000/api-docs/"
	@echo "  RabbitMQ UI      http://localhost:15672      (guest / guest)"
	@echo "  service ports    4001 auth, 4002 project, 4003 analytics, 4004 logging (/health, /metrics)"
	@echo "  mail             written to .local/mail/ (SMTP sink on 127.0.0.1:1025)"
	@echo ""
	@$(DEV_ENV) exec $(PY) infra/stack.py

# The scaled-out profile: two gateways, each its own port as a load balancer's backends would
# be, and two replicas of every service, all on the clusters of `make cluster` (RabbitMQ,
# Redis Cluster for limits/state and for the cache) and on PostgreSQL through PgBouncer in
# transaction pooling (migrations over direct URLs). infra/stack.py documents the ports.
run-cluster: setup infra cluster
	@echo ""
	@echo "  gateways         http://localhost:3000 and http://localhost:3001 (put a load balancer in front)"
	@echo "  gateway status   4000 and 4010 (/metrics)"
	@echo "  service ports    4001/4011 auth, 4002/4012 project, 4003/4013 analytics, 4004/4014 logging"
	@echo "  RabbitMQ         AMQP 5681-5683, UI http://localhost:15681 (guest / guest)"
	@echo "  Redis Cluster    7001-7006 (limits, state), 7101-7103 (response cache)"
	@echo "  PostgreSQL       through PgBouncer :6432 (transaction pooling); migrations on :5432"
	@echo "  mail             written to .local/mail/ (SMTP sink on 127.0.0.1:1025)"
	@echo ""
	@$(DEV_ENV) exec $(PY) infra/stack.py --cluster --replicas 2

# lint first: a type error fails in seconds, before the servers start; then the unit layer
# (no servers; its time printed on its own), then integration and end-to-end tests on the
# real servers, then the tests on the local clusters (make cluster). PYTEST_ARGS=... runs
# just what it names (after lint and the servers it needs).
test: setup lint
ifeq ($(strip $(PYTEST_ARGS)),)
	@echo "== unit layer (no servers) =="
	@$(PY) -m pytest tests/unit
	@$(MAKE) --no-print-directory deploy-tools
	@echo "== deployment files (kustomize, kubeconform, compose schema, promtool; no servers) =="
	@$(PY) -m pytest tests/deploy
	@$(MAKE) --no-print-directory infra browser
	@echo "== integration and end-to-end (real servers) =="
	@$(PY) -m pytest tests/integration tests/e2e
	@$(MAKE) --no-print-directory cluster
	@echo "== on the local clusters (make cluster) =="
	@$(PY) -m pytest tests/cluster
else
	@$(MAKE) --no-print-directory infra browser $(if $(findstring cluster,$(PYTEST_ARGS)),cluster) \
		$(if $(findstring deploy,$(PYTEST_ARGS)),deploy-tools)
	@$(PY) -m pytest $(PYTEST_ARGS)
endif

# The offline checkers of the deployment files (kustomize, kubeconform and the Kubernetes
# schemas, the Compose schema, promtool): installed once into .local/, reused afterwards.
deploy-tools: setup
	@bash infra/deploy_tools.sh

# Prometheus with deploy/prometheus's rules against the stack of `make run` (its UI on
# loopback); `make stop` stops it.
observe: setup infra deploy-tools
	@bash infra/observe.sh

# The browser tests drive Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || { echo "[setup] installing chromium (Debian package)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y chromium >/dev/null 2>&1 || \
		{ apt-get update >/dev/null && apt-get install -y chromium >/dev/null; } || \
		{ echo "the browser tests need the Debian package chromium"; exit 1; }; }

test-unit: setup
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

admin: setup  ## make admin EMAIL=someone@example.com  (promote an account to ADMIN)
	@test -n "$(EMAIL)" || { echo "usage: make admin EMAIL=someone@example.com"; exit 2; }
	@APP_ENV=$${APP_ENV:-development} $(PY) -m auth_svc set-role "$(EMAIL)" ADMIN

reseal-webhook-secrets: setup  ## after a WEBHOOK_ENCRYPTION_KEY rotation: every secret under the new key
	@APP_ENV=$${APP_ENV:-development} $(PY) -m project_svc reseal-webhook-secrets

# CPU per proxied request of BENCH_AB_BASE (default HEAD) against the working tree, in turns
bench-ab: setup infra
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null
	@BENCH_ONLY=throughput PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) bench/ab.py

bench: setup infra cluster  ## BENCH_SECONDS=10 BENCH_PROFILE=1 are optional (BENCH_CLUSTER=0: no cluster rows)
	@command -v wrk >/dev/null || { echo "[bench] installing wrk"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null || \
		{ echo "bench needs wrk (Debian package wrk)"; exit 1; }; }
	@test -x /usr/sbin/nginx || bash infra/install_nginx.sh
	@PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) bench/run.py

# mypy checks the packages listed under [tool.mypy] in pyproject.toml (files), strictly
lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

# docs/api.md and docs/architecture.md: the blocks between `BEGIN GENERATED` / `END GENERATED`
# markers come from contracts/routes.py; tests/unit/test_docs.py fails while they are stale.
docs: setup
	@$(PY) -m contracts.docs_tables

# Local clusters for the scale-out tests (docs/architecture.md section 5): each part's script
# under infra/cluster/ starts (or reuses) its nodes under .local/cluster/, on ports of their own.
cluster: setup
	@for part in infra/cluster/*.sh; do if [ -f "$$part" ]; then bash "$$part" up || exit 1; fi; done

stop:
	@for part in infra/cluster/*.sh; do if [ -f "$$part" ]; then bash "$$part" down || true; fi; done
	@bash infra/down.sh

clean: stop
	rm -rf .local
