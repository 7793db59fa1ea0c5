-- Log entries (docs/api.md section 7.1), one partition per UTC day, created by the logging service
-- (logging_svc.pg_store.Partitions) ahead of time and dropped whole when they pass the
-- retention. What queries filter or sort on has a typed column; the rest of the entry is one
-- orjson document (`rest`; read it with convert_from(rest, 'UTF8')::jsonb).
CREATE TABLE log_entries (
    ts timestamptz NOT NULL,
    id uuid NOT NULL,              -- from the source and the request id (logging_svc.entries)
    external boolean NOT NULL,
    status_code smallint NOT NULL,
    method text NOT NULL,
    user_id text,
    owner_id text,
    project_id text,
    rest bytea NOT NULL
) PARTITION BY RANGE (ts);

-- Every filter of GET /logs is a range scan newest first, (ts, id) being the order. A
-- developer's branches (their requests, requests to their projects, external entries) carry
-- the filtered columns too, so counting a busy developer's matches reads the index alone.
CREATE INDEX log_entries_newest ON log_entries (ts DESC, id DESC);
CREATE INDEX log_entries_user ON log_entries (user_id, ts DESC, id DESC)
    INCLUDE (external, status_code, method, project_id) WHERE user_id IS NOT NULL;
CREATE INDEX log_entries_owner ON log_entries (owner_id, ts DESC, id DESC)
    INCLUDE (user_id, external, status_code, method, project_id) WHERE owner_id IS NOT NULL;
CREATE INDEX log_entries_project ON log_entries (project_id, ts DESC, id DESC)
    WHERE project_id IS NOT NULL;
CREATE INDEX log_entries_status ON log_entries (status_code, ts DESC, id DESC)
    INCLUDE (external, user_id, owner_id);
CREATE INDEX log_entries_external ON log_entries (ts DESC, id DESC)
    INCLUDE (status_code, method, user_id) WHERE external;
CREATE INDEX log_entries_errors ON log_entries (ts DESC, id DESC) WHERE status_code >= 400;

-- A unique key of a partitioned table must hold the partition key, and request ids carry no
-- time: uniqueness and the lookup by request id live here, written in the same statement.
CREATE TABLE log_ids (
    id uuid PRIMARY KEY,
    ts timestamptz NOT NULL
);
CREATE INDEX log_ids_ts ON log_ids (ts);
