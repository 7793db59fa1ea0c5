-- Analytics rollups (docs/architecture.md section 7, docs/api.md section 8).
--
-- Every rollup row belongs to one slice: (viewer, project, resolution, bucket).
--   viewer      '*' for all traffic (an admin's view), else a user id: a request is folded
--               into the view of each distinct id in {userId, ownerId}.
--   project     '*' for any project, else a project id: a request with a project is folded
--               into both, so a query narrowed to a project reads only that project's rows.
--   resolution  bucket width in seconds: 10, 60 or 3600.
--   bucket      start of the bucket (UTC, aligned to its width).
-- Rows only ever grow by INSERT ... ON CONFLICT DO UPDATE (adding counters), so a range's
-- answer is the sum of its buckets.

CREATE TABLE traffic (
    viewer       text             NOT NULL,
    project      text             NOT NULL,
    resolution   integer          NOT NULL,
    bucket       timestamptz      NOT NULL,
    requests     bigint           NOT NULL,
    status_1xx   bigint           NOT NULL,
    status_2xx   bigint           NOT NULL,
    status_3xx   bigint           NOT NULL,
    status_4xx   bigint           NOT NULL,
    status_5xx   bigint           NOT NULL,
    latency_sum  double precision NOT NULL,
    latency_min  double precision NOT NULL,
    latency_max  double precision NOT NULL,
    -- {"<bin>": count}: analytics_svc.histogram's fixed logarithmic bins
    latency_bins jsonb            NOT NULL,
    PRIMARY KEY (viewer, project, resolution, bucket)
);

-- Per endpoint: method and route template ('(unmatched)' when none matched).
CREATE TABLE endpoint_traffic (
    viewer      text             NOT NULL,
    project     text             NOT NULL,
    resolution  integer          NOT NULL,
    bucket      timestamptz      NOT NULL,
    method      text             NOT NULL,
    route       text             NOT NULL,
    requests    bigint           NOT NULL,
    latency_sum double precision NOT NULL,
    PRIMARY KEY (viewer, project, resolution, bucket, method, route)
);

-- Per calling user (requests with a userId only).
CREATE TABLE user_traffic (
    viewer     text        NOT NULL,
    project    text        NOT NULL,
    resolution integer     NOT NULL,
    bucket     timestamptz NOT NULL,
    user_id    text        NOT NULL,
    requests   bigint      NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (viewer, project, resolution, bucket, user_id)
);

-- Per API key (requests with an apiKeyId only).
CREATE TABLE key_traffic (
    viewer     text        NOT NULL,
    project    text        NOT NULL,
    resolution integer     NOT NULL,
    bucket     timestamptz NOT NULL,
    api_key_id text        NOT NULL,
    requests   bigint      NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (viewer, project, resolution, bucket, api_key_id)
);

-- Retention deletes by (resolution, bucket).
CREATE INDEX traffic_age ON traffic (resolution, bucket);
CREATE INDEX endpoint_traffic_age ON endpoint_traffic (resolution, bucket);
CREATE INDEX user_traffic_age ON user_traffic (resolution, bucket);
CREATE INDEX key_traffic_age ON key_traffic (resolution, bucket);

-- The request ids already folded: a redelivered or re-batched event finds its id here and
-- is skipped. Rows are appended in time order, so a BRIN index serves the pruning.
CREATE TABLE folded_requests (
    request_id text        PRIMARY KEY,
    folded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX folded_requests_age ON folded_requests USING brin (folded_at);

-- Two histograms added bin by bin.
CREATE FUNCTION latency_bins_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)
    FROM (SELECT key, sum(value::bigint) AS total
          FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b))
               AS both_bins
          GROUP BY key) AS added
$$;
