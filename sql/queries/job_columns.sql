-- The columns of a claimed job, as claim::job_from_row reads them: spliced by src/claim.rs
-- into the final SELECT of claim_new.sql and claim_due.sql at their `-- @job_columns` line,
-- where `d` is the claimed delivery, `e` its event and `ep` its endpoint.
       d.id AS delivery_id, d.attempts AS attempt, d.attempts_base,
       d.ordering_key IS NOT NULL AS keyed,
       e.id AS event_id, e.event, e.model, e.object_id, e.object, e.changes, e.actor,
       e.account_id, e.created_at, e.traceparent, e.tracestate,
       ep.id AS endpoint_id, ep.name AS endpoint_name, ep.url, ep.secret, ep.signature_scheme,
       ep.timeout_ms, ep.max_attempts, ep.headers, ep.include_fields, ep.redact_fields,
       ep.number_format, ep.trace_context,
       -- A rotated-out secret signs beside the new one until its grace period ends, judged by
       -- the database clock so every worker agrees whatever its own clock says.
       CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END
           AS previous_secret,
