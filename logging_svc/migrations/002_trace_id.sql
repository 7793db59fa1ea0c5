-- The W3C trace id of a gateway entry (docs/api.md section 7.1 `traceId`), null for external
-- entries. A column of its own, not a key of `rest`, so that an index by trace can be added
-- when a query needs one. Adding a nullable column without a default changes only the
-- catalog (every partition, present and future, gets it; existing rows read null), so this
-- takes no time on a large table.
ALTER TABLE log_entries ADD COLUMN trace_id text;
