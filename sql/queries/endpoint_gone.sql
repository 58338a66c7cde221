-- Endpoints whose receiver answered 410 Gone: disable them and cancel their pending deliveries
-- (hookrelay.endpoint_gone), and return their names for the log (ids mean nothing to an
-- operator). $1 endpoint ids.
SELECT hookrelay.endpoint_gone($1::bigint[]) AS cancelled,
       ARRAY(SELECT name FROM hookrelay.endpoints WHERE id = ANY ($1::bigint[]) ORDER BY name)
           AS names
