-- A delivery's event as stored, and how its endpoint shapes payloads, to rebuild the body the
-- receiver got.
SELECT e.id, e.event, e.model, e.object_id, e.object, e.changes, e.actor, e.account_id,
       e.created_at, ep.include_fields, ep.redact_fields,
       ep.number_format
FROM hookrelay.deliveries d
JOIN hookrelay.events e ON e.id = d.event_id
JOIN hookrelay.endpoints ep ON ep.id = d.endpoint_id
WHERE d.id = $1
