-- 0027: replay follows the operational events' routing (0024) as fan-out does: a hookrelay.*
-- event goes only to an endpoint that names it in `events`, never to one subscribed to every
-- event, and never to the endpoint it is about. Before this, replaying a catch-all endpoint's
-- history sent it the operational events of every endpoint, its own included.
CREATE OR REPLACE FUNCTION hookrelay.replay_events(ep hookrelay.endpoints, since timestamptz,
                                                   until timestamptz, only_events text[])
RETURNS TABLE (event_id uuid, rank bigint)
LANGUAGE sql STABLE AS $$
    -- Write order: ids order events only to the millisecond.
    SELECT e.id, row_number() OVER (ORDER BY e.created_at, e.id)
    FROM hookrelay.events e
    WHERE e.created_at >= since AND e.created_at < until
      AND e.fanned_out_at IS NOT NULL
      AND (cardinality(only_events) = 0 OR e.event = ANY (only_events))
      AND ((cardinality(ep.events) = 0 AND left(e.event, 10) <> 'hookrelay.')
           OR e.event = ANY (ep.events))
      AND (left(e.event, 10) <> 'hookrelay.' OR e.object ->> 'endpoint' IS DISTINCT FROM ep.name)
      AND (cardinality(ep.models) = 0 OR e.model = ANY (ep.models))
      AND (ep.account_id IS NULL OR ep.account_id = e.account_id)
      AND (ep.filter IS NULL
           OR jsonb_path_match(hookrelay.envelope(e.id, e.event, e.created_at, e.account_id,
                                                  e.model, e.object_id, e.object, e.changes,
                                                  e.actor),
                               ep.filter, '{}', true))
      AND (NOT ep.skip_empty_changes
           OR NOT hookrelay.changes_left_empty(e.changes, e.model, ep.include_fields))
$$;
