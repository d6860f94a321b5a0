-- Tamper evidence for the event log (issue 12): every event carries
--   hash = SHA-256(previous_hash ‖ UTF-8 of the event's canonical encoding)
-- where previous_hash is the hash of the event before it in its stream (32 zero bytes for a stream's first
-- event). The hash is computed by a BEFORE INSERT trigger, so every writer gets it in the transaction that
-- appends the event, postgres-es included (it inserts the rows itself).
--
-- The canonical encoding of an event is the JSON Canonicalization Scheme (RFC 8785, "JCS") of the object
--   {"aggregateId", "aggregateType", "eventId", "eventType", "eventVersion", "metadata", "payload",
--    "position", "recordedAt", "sequence", "transactionId"}
-- with position and sequence as numbers, transactionId as a decimal string, and recordedAt as
-- "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, always six fractional digits). These are exactly the fields of an event
-- in `GET /events` and in exports, so an auditor checks an event with any RFC 8785 library: drop `hash` and
-- `previousHash`, canonicalize, prepend the previous hash's 32 bytes, SHA-256.
--
-- Why JCS: payload and metadata are stored as `json`, which keeps the text as its writer produced it (the
-- metadata's keys in a HashMap's random order, say), and a verifier sees the value again only after it went
-- through other JSON serializers. A canonical form of the JSON *value* is what survives that; RFC 8785 is the
-- standard one, with implementations in many languages (the Rust verifier uses serde_json_canonicalizer).
-- The PL/pgSQL below implements it for PostgreSQL; tests/audit_tamper.rs checks both against each other on
-- payloads of many shapes (unicode, escapes, numbers of every form).
--
-- Limits of the SQL implementation, both outside what ListBackup's writers produce: numbers beyond the
-- range of a double are refused (RFC 8785 has no representation for them either), and an object key holding
-- U+0000 is not supported (PostgreSQL text cannot hold it; U+0000 inside string values is).

-- A decimal as a double, or NULL when it is beyond the range of doubles.
CREATE FUNCTION audit_float8_or_null(literal text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN literal::float8;
EXCEPTION WHEN numeric_value_out_of_range THEN
    RETURN NULL;
END;
$$;

-- A JSON number as RFC 8785 §3.2.2.3 writes it: the ECMAScript Number::toString of the nearest double,
-- i.e. the fewest significant digits that read back as the same double (the closest such, the even one on a
-- tie), in ECMAScript's layout. PostgreSQL's own shortest output (float8out) is not used: on a rounding
-- boundary it can print one or two digits more than the shortest (2.5874727037454397e+18 for a double whose
-- shortest form is 2.58747270374544e+18).
CREATE FUNCTION audit_jcs_number(literal text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    value     float8;
    bits      bigint;
    exponent2 int;
    mantissa  numeric;
    exact     text;    -- the double's exact value is exact × 10^(-shift)
    shift     int := 0;
    len       int;
    point     int;     -- ECMAScript's n: the value is 0.exact × 10^point
    p         int;
    lo        numeric;
    hi        numeric;
    rest      numeric;
    half      numeric;
    lo_ok     boolean;
    hi_ok     boolean;
    digits    text;
    k         int;
    result    text;
BEGIN
    -- Integers of up to 15 digits are exact doubles and print as themselves.
    IF literal ~ '^-?(0|[1-9][0-9]{0,14})$' THEN
        RETURN CASE WHEN literal = '-0' THEN '0' ELSE literal END;
    END IF;
    value := literal::float8;
    IF value = 0 THEN
        RETURN '0';
    END IF;
    -- The exact decimal value of the double, from its bits: mantissa × 2^exponent2.
    bits := ('x' || encode(float8send(abs(value)), 'hex'))::bit(64)::bigint;
    exponent2 := ((bits >> 52) & 2047)::int;
    mantissa := (bits & 4503599627370495)::numeric;
    IF exponent2 = 0 THEN
        exponent2 := -1074;
    ELSE
        mantissa := mantissa + 4503599627370496;
        exponent2 := exponent2 - 1075;
    END IF;
    IF exponent2 >= 0 THEN
        exact := trunc(mantissa * power(2::numeric, exponent2))::text;
    ELSE
        -- 2^-s = 5^s / 10^s
        exact := trunc(mantissa * power(5::numeric, -exponent2))::text;
        shift := -exponent2;
    END IF;
    len := length(exact);
    point := len - shift;
    -- The fewest significant digits p whose nearest p-digit decimals (below and above) read back as the
    -- same double; the closer of the two, the even one on a tie (ECMAScript Number::toString, RFC 8785).
    FOR p IN 1..17 LOOP
        lo := left(exact, p)::numeric;
        hi := lo + 1;
        lo_ok := (lo::text || 'e' || (point - p)::text)::float8 = abs(value);
        -- Near the top of the range the decimal above may not be a double at all.
        IF point >= 308 THEN
            hi_ok := audit_float8_or_null(hi::text || 'e' || (point - p)::text) = abs(value);
        ELSE
            hi_ok := (hi::text || 'e' || (point - p)::text)::float8 = abs(value);
        END IF;
        IF lo_ok OR hi_ok THEN
            IF lo_ok AND hi_ok THEN
                rest := coalesce(nullif(substr(exact, p + 1), '')::numeric, 0);
                half := 5 * power(10::numeric, len - p - 1);
                IF rest > half OR (rest = half AND lo % 2 = 1) THEN
                    lo_ok := false;
                END IF;
            END IF;
            IF lo_ok THEN
                digits := lo::text;
            ELSE
                digits := hi::text;
                IF length(digits) > p THEN
                    point := point + 1;   -- 99 → 100
                END IF;
            END IF;
            EXIT;
        END IF;
    END LOOP;
    digits := rtrim(digits, '0');
    k := length(digits);
    IF k <= point AND point <= 21 THEN
        result := digits || repeat('0', point - k);
    ELSIF 0 < point AND point <= 21 THEN
        result := left(digits, point) || '.' || substr(digits, point + 1);
    ELSIF -6 < point AND point <= 0 THEN
        result := '0.' || repeat('0', -point) || digits;
    ELSE
        result := left(digits, 1)
            || CASE WHEN k > 1 THEN '.' || substr(digits, 2) ELSE '' END
            || 'e' || CASE WHEN point - 1 >= 0 THEN '+' ELSE '-' END || abs(point - 1)::text;
    END IF;
    RETURN CASE WHEN value < 0 THEN '-' || result ELSE result END;
END;
$$;

-- The UTF-16 code units of a string, big-endian, as bytes: RFC 8785 §3.2.3 sorts object keys by them.
CREATE FUNCTION audit_utf16_key(key text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    units bytea := '';
    code  int;
    ch    text;
BEGIN
    FOREACH ch IN ARRAY regexp_split_to_array(key, '') LOOP
        code := ascii(ch);
        IF code >= 65536 THEN
            code := code - 65536;
            units := units || int4send(((55296 + (code >> 10)) << 16) | (56320 + (code & 1023)));
        ELSE
            units := units || substr(int4send(code), 3, 2);
        END IF;
    END LOOP;
    RETURN units;
END;
$$;

-- RFC 8785 of a jsonb value. jsonb has already kept the last of duplicate keys (as serde_json does).
-- Strings: jsonb's text output escapes exactly what RFC 8785 §3.2.2.2 escapes (`"`, `\`, and control
-- characters as \b \f \n \r \t or \u00xx in lower case) and nothing else. Keys: ordered by their UTF-16 code
-- units, which for keys without characters at or above U+E000 is code point order, COLLATE "C" on UTF-8.
CREATE FUNCTION audit_jcs_tree(value jsonb, utf16_keys boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    result text;
BEGIN
    CASE jsonb_typeof(value)
    WHEN 'object' THEN
        SELECT '{' || coalesce(string_agg(to_json(e.key)::text || ':' ||
                   CASE jsonb_typeof(e.value)
                       WHEN 'string' THEN e.value::text
                       WHEN 'number' THEN audit_jcs_number(e.value::text)
                       WHEN 'boolean' THEN e.value::text
                       WHEN 'null' THEN 'null'
                       ELSE audit_jcs_tree(e.value, utf16_keys) END,
                   ',' ORDER BY CASE WHEN utf16_keys THEN audit_utf16_key(e.key) END, e.key COLLATE "C"),
                   '') || '}'
          INTO result
          FROM jsonb_each(value) e;
        RETURN result;
    WHEN 'array' THEN
        SELECT '[' || coalesce(string_agg(
                   CASE jsonb_typeof(e.v)
                       WHEN 'string' THEN e.v::text
                       WHEN 'number' THEN audit_jcs_number(e.v::text)
                       WHEN 'boolean' THEN e.v::text
                       WHEN 'null' THEN 'null'
                       ELSE audit_jcs_tree(e.v, utf16_keys) END,
                   ',' ORDER BY e.n), '') || ']'
          INTO result
          FROM jsonb_array_elements(value) WITH ORDINALITY AS e(v, n);
        RETURN result;
    WHEN 'number' THEN
        RETURN audit_jcs_number(value::text);
    ELSE
        RETURN value::text;
    END CASE;
END;
$$;

-- RFC 8785 of a json value (as postgres-es stores payload and metadata).
-- plan_cache_mode: the queries of audit_jcs_tree run once per JSON object with new values each time; left to
-- itself PostgreSQL keeps planning them afresh (custom plans), which cost more than the rest of the work.
-- Their generic plans are the only sensible ones (a scan of jsonb_each), and the setting holds for the nested
-- calls too.
CREATE FUNCTION audit_jcs(value json) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    raw      text := value::text;
    -- Keys need ordering by UTF-16 code units only when a character at or above U+E000 may occur, which it
    -- cannot in ASCII text without \u escapes.
    utf16    boolean := octet_length(raw) <> length(raw) OR position('\u' IN raw) > 0;
    sentinel text;
    result   text;
BEGIN
    IF position('\u0000' IN raw) = 0 THEN
        RETURN audit_jcs_tree(raw::jsonb, utf16);
    END IF;
    -- jsonb cannot hold U+0000. Each real `\u0000` escape (not one whose backslash is itself escaped) is
    -- replaced by a sentinel absent from the text, canonicalized, and put back as RFC 8785 writes U+0000.
    sentinel := 'NUL' || md5(raw);
    WHILE position(sentinel IN raw) > 0 LOOP
        sentinel := sentinel || 'x';
    END LOOP;
    result := audit_jcs_tree(
        regexp_replace(raw, '(?<![\\])((?:\\\\)*)\\u0000', '\1' || sentinel, 'g')::jsonb, utf16);
    RETURN replace(result, sentinel, '\u0000');
END;
$$;

-- The canonical encoding of one event (see the top of this file).
CREATE FUNCTION audit_canonical_event(
    aggregate_type text, aggregate_id text, event_id uuid, event_type text, event_version text,
    metadata json, payload json, global_position bigint, recorded_at timestamptz, sequence bigint,
    transaction_id xid8
) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT '{"aggregateId":' || to_json(aggregate_id)::text
        || ',"aggregateType":' || to_json(aggregate_type)::text
        || ',"eventId":"' || event_id::text || '"'
        || ',"eventType":' || to_json(event_type)::text
        || ',"eventVersion":' || to_json(event_version)::text
        || ',"metadata":' || audit_jcs(metadata)
        || ',"payload":' || audit_jcs(payload)
        || ',"position":' || audit_jcs_number(global_position::text)
        || ',"recordedAt":"' || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
        || ',"sequence":' || audit_jcs_number(sequence::text)
        || ',"transactionId":"' || transaction_id::text || '"}'
$$;

-- SHA-256(previous ‖ canonical encoding).
CREATE FUNCTION audit_event_hash(previous bytea, e events) RETURNS bytea
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT sha256(previous || convert_to(audit_canonical_event(
        e.aggregate_type, e.aggregate_id, e.event_id, e.event_type, e.event_version, e.metadata, e.payload,
        e.global_position, e.recorded_at, e.sequence, e.transaction_id), 'UTF8'))
$$;

ALTER TABLE events
    ADD COLUMN previous_hash bytea,
    ADD COLUMN hash          bytea;

-- Chains every event appended from now on. Column defaults (global_position, transaction_id, event_id,
-- recorded_at) are already filled in when a BEFORE trigger runs. Two appends to one stream cannot interleave:
-- the second to insert a given sequence fails on the primary key, and sequence n + 1 is only ever inserted by
-- a writer that has seen n committed (or inserted it itself, earlier in the same transaction).
CREATE FUNCTION events_chain_hash() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT hash INTO NEW.previous_hash FROM events
     WHERE aggregate_type = NEW.aggregate_type AND aggregate_id = NEW.aggregate_id
       AND sequence = NEW.sequence - 1;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM events
                    WHERE aggregate_type = NEW.aggregate_type AND aggregate_id = NEW.aggregate_id
                      AND sequence < NEW.sequence) THEN
            RAISE EXCEPTION 'event % of stream %/% does not follow the stream''s last event',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        NEW.previous_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;
    NEW.hash := audit_event_hash(NEW.previous_hash, NEW);
    RETURN NEW;
END;
$$;

-- Old events get their chain here, stream by stream in sequence order. This is the one UPDATE the log ever
-- sees: it adds the two columns and changes nothing else.
ALTER TABLE events DISABLE TRIGGER events_append_only;
DO $$
DECLARE
    e        events;
    previous bytea;
    stream   text := NULL;
BEGIN
    FOR e IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence LOOP
        IF stream IS DISTINCT FROM e.aggregate_type || '/' || e.aggregate_id THEN
            stream := e.aggregate_type || '/' || e.aggregate_id;
            previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        END IF;
        UPDATE events SET previous_hash = previous, hash = audit_event_hash(previous, e)
         WHERE aggregate_type = e.aggregate_type AND aggregate_id = e.aggregate_id AND sequence = e.sequence
        RETURNING hash INTO previous;
    END LOOP;
END;
$$;
ALTER TABLE events ENABLE TRIGGER events_append_only;

ALTER TABLE events
    ALTER COLUMN previous_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER events_hash_chain
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain_hash();

-- The log of one account in log order (`GET /events`, exports): a deep page costs what the first does.
CREATE INDEX events_account_log ON events ((metadata ->> 'accountId'), transaction_id, global_position);

-- An event by its position (`?after=`, `?asOf=<position>`).
CREATE UNIQUE INDEX events_global_position ON events (global_position);
