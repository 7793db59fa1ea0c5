#!/usr/bin/env bash
# Creates the application role and its three databases in the postgres container.
#
# Mounted into /docker-entrypoint-initdb.d by compose.yaml, so the official postgres image
# runs it exactly once: on the first start, when the data volume is still empty. Changing
# GATEWAY_DB_PASSWORD later has no effect on an existing volume (use ALTER ROLE, or
# `docker compose down -v` to start over).
#
# The role `gateway` is an ordinary login role, not a superuser: it owns gateway_auth,
# gateway_project, gateway_analytics and gateway_logs (so it can create its tables there) and nothing else. The superuser
# `postgres` keeps the image's POSTGRES_PASSWORD and is used by nobody in the stack.
#
# Same options as the image's entrypoint, so this is safe whether it is executed or sourced
# (the entrypoint sources *.sh files that lost their executable bit).
set -Eeo pipefail

: "${GATEWAY_DB_PASSWORD:?GATEWAY_DB_PASSWORD must be set for the postgres container}"

# The password travels as a psql variable and is quoted by psql (:'name'), never spliced
# into the SQL text by the shell. Variables are interpolated in input read from stdin.
psql --no-psqlrc -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set=gateway_password="$GATEWAY_DB_PASSWORD" <<'SQL'
CREATE ROLE gateway LOGIN PASSWORD :'gateway_password';
CREATE DATABASE gateway_auth OWNER gateway;
CREATE DATABASE gateway_project OWNER gateway;
CREATE DATABASE gateway_analytics OWNER gateway;
CREATE DATABASE gateway_logs OWNER gateway;
REVOKE ALL ON DATABASE gateway_auth FROM PUBLIC;
REVOKE ALL ON DATABASE gateway_project FROM PUBLIC;
REVOKE ALL ON DATABASE gateway_analytics FROM PUBLIC;
REVOKE ALL ON DATABASE gateway_logs FROM PUBLIC;
GRANT ALL ON DATABASE gateway_auth TO gateway;
GRANT ALL ON DATABASE gateway_project TO gateway;
GRANT ALL ON DATABASE gateway_analytics TO gateway;
GRANT ALL ON DATABASE gateway_logs TO gateway;
SQL
