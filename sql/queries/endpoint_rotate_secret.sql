-- Signs with a new secret; with a grace period the old one keeps signing until it ends (by
-- the database clock). $1 endpoint name, $2 new secret, $3 grace in milliseconds (0: none).
UPDATE hookrelay.endpoints
SET previous_secret = CASE WHEN $3::bigint > 0 THEN secret END,
    previous_secret_expires_at =
        CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * interval '1 millisecond' END,
    secret = $2
WHERE name = $1 RETURNING previous_secret_expires_at
