-- Per-minute figures older than two days are no longer shown anywhere.
DELETE FROM hookrelay.endpoint_stats WHERE minute < now() - interval '2 days'
