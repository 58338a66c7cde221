-- 0015: inputs that slipped through, and messages that showed too much.
--
-- - Event names: new events use A-Z a-z 0-9 . _ - : / only. The name travels in the
--   X-Webhook-Event header, which is ASCII; "no spaces" let a no-break or zero-width space and
--   raw UTF-8 through. Events written before keep their names: the rule applies while an event
--   waits for fan-out (fanned_out_at IS NULL), which is when it is inserted, and the claim that
--   fans it out writes fanned_out_at, so that UPDATE still passes for an older name.
-- - Endpoint names are unique ignoring case ("DEC" and "dec" would be told apart by nobody).
-- - Standard Webhooks keys must decode to 24 to 64 bytes, as the hint always said.
-- - Endpoint URLs with port 0 are refused (nothing listens there).
-- - Event filters follow the event-name rule; model filters refuse every Unicode space and
--   invisible character (categories Cc, Cf, Zs, Zl, Zp).
-- - Messages show names as JSON strings ("crm"), not SQL literals ('crm'''), and never show a
--   header name that is not valid (it is often a value typed where the name goes).
-- Rows already stored are not checked again for the new rules unless the column changes, so
-- an existing endpoint can still be disabled or renamed.

-- Endpoint names that differ only in case must be renamed first: which one to keep is the
-- operator's call, not the migration's.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT string_agg(names, '; ') INTO clashes FROM (
        SELECT string_agg(to_jsonb(name)::text, ' and ' ORDER BY name) AS names
        FROM hookrelay.endpoints GROUP BY lower(name) HAVING count(*) > 1
    ) c;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'endpoint names must be unique ignoring case, and these differ only in case: %', clashes
            USING ERRCODE = 'unique_violation',
                  HINT = 'rename all but one of each (UPDATE hookrelay.endpoints SET name = ''…'' WHERE name = ''…''), then run hookrelay migrate again';
    END IF;
END
$$;

CREATE UNIQUE INDEX endpoints_name_ignoring_case ON hookrelay.endpoints (lower(name));

-- A name as messages show it: a JSON string, cut short.
CREATE FUNCTION hookrelay.shown(value text, max_chars integer DEFAULT 100) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(to_jsonb(left(value, max_chars))::text, 'NULL')
$$;

-- Unicode categories Cc, Cf, Zs, Zl and Zp as a regex class: spaces of every width, line and
-- paragraph separators, control and format (zero-width, bidi, BOM) characters.
CREATE FUNCTION hookrelay.invisible_chars() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '[\x01-\x20\x7f-\xa0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2'
           '\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff'
           '\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3'
           '\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'
$$;

-- A character as messages show it: "é" (U+00E9); invisible ones by code point only.
CREATE FUNCTION hookrelay.shown_char(c text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN c ~ hookrelay.invisible_chars() THEN ''
                ELSE to_jsonb(c)::text || ' ' END
           || '(U+' || upper(lpad(to_hex(ascii(c)), 4, '0')) || ')'
$$;

-- Why an event name is not valid (NULL: it is). Kept in step with emit::event_name_problem.
CREATE FUNCTION hookrelay.event_name_problem(event text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN event IS NULL OR event = '' THEN 'the event name is empty'
        WHEN length(event) > 200 THEN format('the event name has %s characters; at most 200 are allowed', length(event))
        WHEN event ~ '[^A-Za-z0-9._:/-]' THEN
            format('the event name %s has %s, which event names may not have',
                   hookrelay.shown(event, 60),
                   hookrelay.shown_char(substring(event FROM '[^A-Za-z0-9._:/-]')))
    END
$$;

-- The events check of 0011, with the new name rule for events still to be fanned out. The
-- errors keep the constraint names callers match on.
CREATE FUNCTION hookrelay.check_event(event text, object jsonb, changes jsonb, fanned_out_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    -- The fast test first: every insert pays for it.
    IF fanned_out_at IS NULL AND (length(event) NOT BETWEEN 1 AND 200 OR event ~ '[^A-Za-z0-9._:/-]') THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "%"',
                'event_name_must_be_1_to_200_characters_without_spaces'
            USING ERRCODE = 'check_violation', SCHEMA = 'hookrelay', TABLE = 'events',
                  CONSTRAINT = 'event_name_must_be_1_to_200_characters_without_spaces',
                  DETAIL = hookrelay.event_name_problem(event) || '.',
                  HINT = 'Name events like order.paid: 1 to 200 of A-Z a-z 0-9 . _ - : /';
    END IF;
    RETURN hookrelay.check_event(event, object, changes);
END
$$;

ALTER TABLE hookrelay.events
    DROP CONSTRAINT event_must_be_valid,
    ADD CONSTRAINT event_must_be_valid
        CHECK (hookrelay.check_event(event, object, changes, fanned_out_at)) NOT VALID;

-- The endpoint checks of 0008, with names shown plainly and the new rules.
CREATE OR REPLACE FUNCTION hookrelay.validate_endpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key_b64 text;
    key_bytes integer;
    bad text;
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' THEN
        RAISE EXCEPTION 'endpoint name % is not valid', hookrelay.shown(NEW.name, 120)
            USING ERRCODE = 'check_violation',
                  HINT = 'use 1 to 100 letters, digits, ".", "_" or "-", starting with a letter or digit';
    END IF;
    IF NEW.url ~ '^[^:/?#]+://[^/?#]*@' THEN
        RAISE EXCEPTION 'endpoint url must not contain credentials (user:password@)'
            USING ERRCODE = 'check_violation',
                  HINT = 'remove the credentials from the URL; receivers authenticate hookrelay by its signature, or by a static header';
    END IF;
    IF length(NEW.url) > 2048 THEN
        RAISE EXCEPTION 'endpoint url is % characters long; at most 2048 are allowed', length(NEW.url)
            USING ERRCODE = 'check_violation',
                  HINT = 'receivers and proxies commonly refuse longer URLs; move long tokens into a static header';
    END IF;
    IF NEW.url IS NULL OR NEW.url !~* '^https?://' THEN
        RAISE EXCEPTION 'endpoint url % is not an http:// or https:// URL', hookrelay.shown(NEW.url, 200)
            USING ERRCODE = 'check_violation',
                  HINT = 'give a full URL such as https://example.com/webhooks';
    END IF;
    IF NEW.url !~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$' THEN
        RAISE EXCEPTION 'endpoint url % is malformed', hookrelay.shown(NEW.url, 200)
            USING ERRCODE = 'check_violation',
                  HINT = 'a URL needs a host and no spaces, such as https://example.com/webhooks';
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.url IS DISTINCT FROM OLD.url) AND NEW.url ~ '^[^:/?#]+://[^/?#]*:0+([/?#]|$)' THEN
        RAISE EXCEPTION 'endpoint url % has port 0, which nothing listens on', hookrelay.shown(NEW.url, 200)
            USING ERRCODE = 'check_violation',
                  HINT = 'give the receiver''s port, or none for the default (80 for http, 443 for https)';
    END IF;
    IF NEW.secret IS NULL OR length(NEW.secret) NOT BETWEEN 8 AND 1000 THEN
        RAISE EXCEPTION 'endpoint secret must be 8 to 1000 characters'
            USING ERRCODE = 'check_violation',
                  HINT = 'hookrelay generates a strong secret when none is given';
    END IF;
    IF NEW.signature_scheme IS NULL OR NEW.signature_scheme NOT IN ('hookrelay', 'body-hex', 'standard') THEN
        RAISE EXCEPTION 'unknown signature scheme %', hookrelay.shown(NEW.signature_scheme, 40)
            USING ERRCODE = 'check_violation',
                  HINT = 'use one of: hookrelay, body-hex, standard';
    END IF;
    IF NEW.signature_scheme = 'standard' THEN
        key_b64 := substr(NEW.secret, 7);
        IF NEW.secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' OR length(key_b64) % 4 <> 0 THEN
            RAISE EXCEPTION 'a standard-webhooks secret must be "whsec_" followed by base64'
                USING ERRCODE = 'check_violation',
                      HINT = 'give whsec_<base64 of 24 to 64 random bytes>, or no secret to have one generated';
        END IF;
        key_bytes := length(key_b64) / 4 * 3 - (length(key_b64) - length(rtrim(key_b64, '=')));
        IF (TG_OP = 'INSERT' OR NEW.secret IS DISTINCT FROM OLD.secret
            OR NEW.signature_scheme IS DISTINCT FROM OLD.signature_scheme)
           AND key_bytes NOT BETWEEN 24 AND 64 THEN
            RAISE EXCEPTION 'a standard-webhooks secret must hold 24 to 64 bytes; this one holds %', key_bytes
                USING ERRCODE = 'check_violation',
                      HINT = 'give whsec_<base64 of 24 to 64 random bytes>, or no secret to have one generated';
        END IF;
    END IF;
    IF NEW.max_attempts IS NOT NULL AND NEW.max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'max_attempts % is out of range', NEW.max_attempts
            USING ERRCODE = 'check_violation', HINT = 'use 1 to 100, or NULL for the worker default';
    END IF;
    IF NEW.timeout_ms IS NOT NULL AND NEW.timeout_ms NOT BETWEEN 100 AND 300000 THEN
        RAISE EXCEPTION 'timeout_ms % is out of range', NEW.timeout_ms
            USING ERRCODE = 'check_violation', HINT = 'use 100 to 300000 (5 minutes), or NULL for the worker default';
    END IF;
    IF NEW.events IS NULL OR NEW.models IS NULL THEN
        RAISE EXCEPTION 'event and model filters must be arrays, not NULL'
            USING ERRCODE = 'check_violation', HINT = 'use an empty array to match every event or model';
    END IF;
    IF TG_OP = 'INSERT' OR NEW.events IS DISTINCT FROM OLD.events THEN
        SELECT hookrelay.event_name_problem(v) INTO bad FROM unnest(NEW.events) AS f(v)
        WHERE hookrelay.event_name_problem(v) IS NOT NULL LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'event filter: %', bad
                USING ERRCODE = 'check_violation',
                      HINT = 'name events with 1 to 200 of A-Z a-z 0-9 . _ - : /, or use an empty array to match every event';
        END IF;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.models IS DISTINCT FROM OLD.models THEN
        SELECT CASE WHEN v IS NULL OR v = '' OR length(v) > 200
                    THEN 'a model name is empty or longer than 200 characters'
                    ELSE format('the model name %s has %s', hookrelay.shown(v, 60),
                                hookrelay.shown_char(substring(v FROM hookrelay.invisible_chars()))) END
        INTO bad FROM unnest(NEW.models) AS f(v)
        WHERE v IS NULL OR v = '' OR length(v) > 200 OR v ~ hookrelay.invisible_chars() LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'model filter: %', bad
                USING ERRCODE = 'check_violation',
                      HINT = 'model names such as store.Order have no spaces or invisible characters; use an empty array to match every model';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

-- The header checks of 0003: a name is shown only once it is known to be a valid name (text
-- that is not one is often a value typed before the colon), and values are never shown.
CREATE OR REPLACE FUNCTION hookrelay.validate_endpoint_signing() RETURNS trigger
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
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(NEW.headers) AS k(key)
               WHERE key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$') THEN
        RAISE EXCEPTION 'an endpoint header name is empty, longer than 100 characters, or has characters a header name cannot have (such as a space or a colon)'
            USING ERRCODE = 'check_violation',
                  HINT = 'header names are letters, digits and - such as Authorization; put the value after the name, not in it';
    END IF;
    SELECT key INTO bad FROM jsonb_each(NEW.headers) WHERE jsonb_typeof(value) <> 'string' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % must have a string value', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'write numbers and booleans as strings, e.g. {"X-Tenant": "42"}';
    END IF;
    SELECT key INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    WHERE hookrelay.is_reserved_header(key) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % is set by hookrelay itself and cannot be replaced', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'Content-Type, User-Agent, Host, Content-Length, X-Webhook-* and webhook-* are reserved; pick another name';
    END IF;
    SELECT min(key) INTO bad FROM jsonb_object_keys(NEW.headers) AS k(key)
    GROUP BY lower(key) HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % is given more than once (names ignore case)', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'keep one of them';
    END IF;
    -- Control characters would let a value start a new header line.
    SELECT key INTO bad FROM jsonb_each_text(NEW.headers)
    WHERE value ~ '[\x01-\x08\x0a-\x1f\x7f]' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % has a value with control characters (such as a line break)', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'a header value is one line of text; remove line breaks and other control characters';
    END IF;
    SELECT key INTO bad FROM jsonb_each_text(NEW.headers) WHERE length(value) > 4096 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'endpoint header % has a value longer than 4096 characters', hookrelay.shown(bad)
            USING ERRCODE = 'check_violation',
                  HINT = 'receivers and proxies commonly refuse longer headers';
    END IF;
    RETURN NEW;
END
$$;
