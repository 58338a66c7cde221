-- 0012: each claim's order is one only its own index provides.
--
-- The fan-out claim took events in id order and the claim of parked deliveries took them in id
-- order too, and the primary keys give that order as well as the partial indexes meant for
-- these claims. From statistics that are stale (a fresh install, a backlog analysed before it
-- was claimed) the planner could not tell them apart and walked the primary key past every row
-- already done (seen right after an install: 1,816 events filtered out of one claim of 100,
-- 3,968 deliveries out of one claim of 8 parked ones). Ordering by (id, created_at) and by
-- (created_at, id) is the same order in practice (oldest first), and only these indexes have
-- it; worker sessions turn incremental sorts off so the primary key's order cannot be patched
-- up into it.
DROP INDEX hookrelay.events_to_fan_out;
CREATE INDEX events_to_fan_out ON hookrelay.events (id, created_at) WHERE fanned_out_at IS NULL;

DROP INDEX hookrelay.deliveries_waiting;
CREATE INDEX deliveries_waiting ON hookrelay.deliveries (endpoint_id, created_at, id)
    WHERE state = 'pending' AND next_attempt_at = 'infinity';
