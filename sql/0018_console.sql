-- 0018: the operator console (`hookrelay console`) lists deliveries newest first and pages
-- through them by key: (created_at, id) below the last row shown, never OFFSET. This index
-- serves that order, and time ranges, without sorting or scanning history, however many
-- deliveries are kept. created_at never changes, so updates of a delivery stay HOT.
CREATE INDEX deliveries_newest ON hookrelay.deliveries (created_at, id);

-- The overview's chart and the endpoints' sparklines read the figures of the last hours across
-- every endpoint (the primary key leads with endpoint_id). minute never changes once a row is
-- written, so the counters' updates stay HOT.
CREATE INDEX endpoint_stats_by_minute ON hookrelay.endpoint_stats (minute);
