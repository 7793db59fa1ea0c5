-- Alert events (docs/api.md section 9.2) when ALERT_EVENT_STORE=postgresql (the default);
-- analytics_svc.alert_events_pg. Rules stay in MongoDB.
--
-- id is the event's wire `_id` as bytes: the 12 bytes derived from its rule and evaluation
-- slot (contracts.mongo.derived_id), so two engines storing the same slot store one row
-- (INSERT ... ON CONFLICT DO NOTHING) and an event has the same `_id` in either store.

CREATE TABLE alert_events (
    id               bytea            PRIMARY KEY,
    ts               timestamptz      NOT NULL,
    user_id          text             NOT NULL,
    rule_id          text             NOT NULL,  -- the rule's ObjectId, 24 hex characters
    project_id       text,
    service          text             NOT NULL,
    severity         text             NOT NULL,
    acknowledged     boolean          NOT NULL DEFAULT false,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    rule_name        text             NOT NULL,
    metric           text             NOT NULL,
    value            double precision NOT NULL,
    threshold        double precision NOT NULL,
    operator         text             NOT NULL,
    message          text             NOT NULL
);

-- the lists, newest first: an owner's, and everyone's (an admin's)
CREATE INDEX alert_events_user_ts ON alert_events (user_id, ts DESC, id DESC);
CREATE INDEX alert_events_ts ON alert_events (ts DESC, id DESC);
-- the open ones (acknowledged=false), however few among many acknowledged
CREATE INDEX alert_events_open_user_ts ON alert_events (user_id, ts DESC, id DESC)
    WHERE NOT acknowledged;
CREATE INDEX alert_events_open_ts ON alert_events (ts DESC, id DESC) WHERE NOT acknowledged;
-- the engine's cool-down check: a rule's latest event
CREATE INDEX alert_events_rule_ts ON alert_events (rule_id, ts DESC);
