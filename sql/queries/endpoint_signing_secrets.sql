-- An endpoint's scheme, current secret and the previous secret while it still signs, locked
-- for a rotation. $1 endpoint name.
SELECT signature_scheme, secret,
       CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
FROM hookrelay.endpoints WHERE name = $1 FOR UPDATE
