-- 0002: secret rotation and endpoint-specific static headers.
--
-- Rotation keeps the replaced secret in previous_secret until previous_secret_expires_at; until
-- then every request is signed with both, so receivers can switch secrets at their own pace.
-- The claim queries decide "until then" by the database clock. Expired previous secrets are
-- simply ignored (and replaced by the next rotation).
--
-- headers: a JSON object of static headers sent with every request to the endpoint (an
-- Authorization token, a tenant id). They can never replace hookrelay's own headers.

ALTER TABLE hookrelay.endpoints
    ADD COLUMN previous_secret            text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN headers                    jsonb NOT NULL DEFAULT '{}'::jsonb;

-- True for header names hookrelay sets itself or that frame the request: an endpoint's static
-- headers may not use them. Kept in step with deliver::is_reserved_header in the Rust code.
CREATE FUNCTION hookrelay.is_reserved_header(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(name) IN ('content-type', 'content-length', 'content-encoding',
                           'transfer-encoding', 'host', 'connection', 'keep-alive', 'upgrade',
                           'te', 'trailer', 'expect', 'proxy-connection', 'user-agent')
        OR lower(name) LIKE 'x-webhook-%'
        OR lower(name) LIKE 'webhook-%'
$$;

CREATE FUNCTION hookrelay.validate_endpoint_signing() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    IF (NEW.previous_secret IS NULL) <> (NEW.previous_secret_expires_at IS NULL) THEN
        RAISE EXCEPTION 'previous_secret and previous_secret_expires_at must be set together'
            USING ERRCODE = 'check_violation',
                  HINT = 'use `hookrelay endpoint rotate-secret NAME`, or set both columns (or neither)';
    END IF;
    IF NEW.previous_secret IS NOT NULL THEN
        IF length(NEW.previous_secret) NOT BETWEEN 8 AND 1000 THEN
            RAISE EXCEPTION 'endpoint previous_secret must be 8 to 1000 characters'
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.signature_scheme = 'standard'
           AND NEW.previous_secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
            RAISE EXCEPTION 'the previous secret is not a standard-webhooks secret ("whsec_" followed by base64)'
                USING ERRCODE = 'check_violation',
                      HINT = 'clear previous_secret and previous_secret_expires_at before changing the scheme to standard';
        END IF;
    END IF;
    IF NEW.headers IS NULL OR jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'endpoint headers must be a JSON object of names and string values'
            USING ERRCODE = 'check_violation',
                  HINT = 'for example {"Authorization": "Bearer …"}; use {} for none';
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(NEW.headers)) > 20 THEN
        RAISE EXCEPTION 'an endpoint may have at most 20 static headers'
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT key INTO bad FROM jsonb_each(NEW.headers) WHERE jsonb_typeof(value) <> 'string' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % must have a string value', quote_ident(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'write numbers and booleans as strings, e.g. {"X-Tenant": "42"}';
    END IF;
    SELECT key INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    WHERE key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header name % is not a valid HTTP header name', quote_literal(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'use 1 to 100 letters, digits and - (no spaces or colons), e.g. Authorization';
    END IF;
    SELECT key INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    WHERE hookrelay.is_reserved_header(key) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % is set by hookrelay itself and cannot be replaced', quote_literal(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'Content-Type, User-Agent, Host, Content-Length, X-Webhook-* and webhook-* are reserved; pick another name';
    END IF;
    SELECT lower(key) INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    GROUP BY lower(key) HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % is given more than once (names ignore case)', quote_literal(bad)
            USING ERRCODE = 'check_violation';
    END IF;
    -- Control characters would let a value start a new header line.
    SELECT key INTO bad FROM jsonb_each_text(NEW.headers)
    WHERE value ~ '[\x01-\x08\x0a-\x1f\x7f]' OR length(value) > 4096 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % has a value with control characters (such as a line break) or longer than 4096 characters', quote_literal(bad)
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

-- Named to sort after endpoints_validate, so the basic checks (scheme, secret) come first.
CREATE TRIGGER endpoints_validate_signing
    BEFORE INSERT OR UPDATE ON hookrelay.endpoints
    FOR EACH ROW EXECUTE FUNCTION hookrelay.validate_endpoint_signing();
