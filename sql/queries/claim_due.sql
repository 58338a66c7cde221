-- Claim deliveries that are due: retries whose time has come and claims whose lease expired
-- (their worker died before recording a result). Each claim counts its attempt and sets a
-- lease; an expired lease is logged as an attempt of its own so operators can see it.
-- $1 deliveries to claim, $2 lease in milliseconds, $3 worker id.
WITH due AS (
    SELECT d.id, d.attempts, d.locked_until, d.locked_by
    FROM hookrelay.deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
      AND EXISTS (SELECT 1 FROM hookrelay.endpoints ep WHERE ep.id = d.endpoint_id AND ep.active)
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
), expired AS (
    INSERT INTO hookrelay.attempts (delivery_id, attempt, started_at, error_code, error, worker)
    SELECT due.id, due.attempts, now(), 'lease_expired',
           'worker ' || coalesce(due.locked_by, '?')
               || ' stopped before recording a result; the request may or may not have been sent',
           due.locked_by
    FROM due
    WHERE due.locked_until IS NOT NULL
), claimed AS (
    UPDATE hookrelay.deliveries d
    SET attempts = d.attempts + 1,
        next_attempt_at = now() + $2::bigint * interval '1 millisecond',
        locked_until = now() + $2::bigint * interval '1 millisecond',
        locked_by = $3::text,
        last_error_code = CASE WHEN due.locked_until IS NOT NULL THEN 'lease_expired'
                               ELSE d.last_error_code END,
        updated_at = now()
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.attempts_base
)
SELECT c.id AS delivery_id, c.attempts AS attempt, c.attempts_base,
       e.id AS event_id, e.event, e.model, e.object_id, e.object, e.changes, e.actor,
       e.account_id, e.created_at,
       ep.id AS endpoint_id, ep.name AS endpoint_name, ep.url, ep.secret, ep.signature_scheme,
       ep.timeout_ms, ep.max_attempts, ep.headers, ep.include_fields, ep.redact_fields,
       -- A rotated-out secret signs beside the new one until its grace period ends, judged by
       -- the database clock so every worker agrees whatever its own clock says.
       CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END
           AS previous_secret,
       0::bigint AS events_claimed
FROM claimed c
JOIN hookrelay.events e ON e.id = c.event_id
JOIN hookrelay.endpoints ep ON ep.id = c.endpoint_id
