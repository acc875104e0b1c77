-- Perdure PostgreSQL schema, migration 3: functions the introspection views
-- (perdure/server/query/pg_views.py) are built from. Pure functions of their
-- arguments; the message catalogue they walk (pb_field, pb_kind) is a
-- temporary table each query connection fills from the server's own protobuf
-- descriptors, so a protocol change needs no migration.

-- `inv_1...` of a raw 24-byte invocation id: base62 of the little-endian
-- partition key (11 digits) and of the little-endian uuid (22 digits).
CREATE FUNCTION perdure_b62(n numeric, width integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  digits constant text := '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  out text := '';
BEGIN
  WHILE n > 0 LOOP
    out := substr(digits, (n % 62)::integer + 1, 1) || out;
    n := div(n, 62);
  END LOOP;
  IF length(out) > width THEN RETURN right(out, width); END IF;
  RETURN lpad(out, width, '0');
END $$;

CREATE FUNCTION perdure_le(b bytea) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  n numeric := 0;
BEGIN
  FOR i IN REVERSE length(b) - 1 .. 0 LOOP
    n := n * 256 + get_byte(b, i);
  END LOOP;
  RETURN n;
END $$;

CREATE FUNCTION perdure_id(raw bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN length(raw) = 24 THEN
  'inv_1' || perdure_b62(perdure_le(substr(raw, 1, 8)), 11) || perdure_b62(perdure_le(substr(raw, 9, 16)), 22)
END;

-- The partition key (first 8 bytes, big-endian) as a signed bigint, as SQLite shows it.
CREATE FUNCTION perdure_pk(raw bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN length(raw) >= 8 THEN ('x' || encode(substr(raw, 1, 8), 'hex'))::bit(64)::bigint END;

-- RFC 3339 with milliseconds and Z, as Restate renders Timestamp(ms).
CREATE FUNCTION perdure_ts(ms bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_char(timestamp '1970-01-01' + ms * interval '1 millisecond', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- ISO 8601 duration in seconds ("PT86400S", "PT0.5S"), as Restate renders Duration(ms).
CREATE FUNCTION perdure_dur(ms bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN ms % 1000 = 0 THEN 'PT' || (ms / 1000) || 'S'
  ELSE 'PT' || (ms / 1000) || '.' || rtrim(lpad((ms % 1000)::text, 3, '0'), '0') || 'S' END;

-- UTF-8 text of a byte string, NULL when it is not valid UTF-8.
CREATE FUNCTION perdure_utf8(b bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
  RETURN convert_from(b, 'UTF8');
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END $$;

-- A byte string as a JSON array of byte values (as Restate prints bytes).
CREATE FUNCTION perdure_bytes_json(b bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN '[' || coalesce((SELECT string_agg(get_byte(b, i)::text, ',' ORDER BY i)
                         FROM generate_series(0, length(b) - 1) i), '') || ']';

-- The top-level fields of a protobuf message, in wire order: field number, wire
-- type, the value of a varint (wire 0), the bytes of anything else.
CREATE FUNCTION perdure_pb_fields(b bytea)
RETURNS TABLE (num integer, wire integer, ival bigint, bval bytea)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  pos integer := 0;
  n integer := length(b);
  v bigint;
  shift integer;
  byte integer;
BEGIN
  WHILE pos < n LOOP
    v := 0; shift := 0;
    LOOP
      byte := get_byte(b, pos); pos := pos + 1;
      v := v | ((byte & 127)::bigint << shift);
      EXIT WHEN byte < 128;
      shift := shift + 7;
    END LOOP;
    num := (v >> 3)::integer; wire := (v & 7)::integer; ival := NULL; bval := NULL;
    IF wire = 0 THEN
      v := 0; shift := 0;
      LOOP
        byte := get_byte(b, pos); pos := pos + 1;
        IF shift < 64 THEN v := v | ((byte & 127)::bigint << shift); END IF;
        EXIT WHEN byte < 128;
        shift := shift + 7;
      END LOOP;
      ival := v;
    ELSIF wire = 2 THEN
      v := 0; shift := 0;
      LOOP
        byte := get_byte(b, pos); pos := pos + 1;
        v := v | ((byte & 127)::bigint << shift);
        EXIT WHEN byte < 128;
        shift := shift + 7;
      END LOOP;
      IF pos + v > n THEN RAISE EXCEPTION 'truncated length-delimited field %', num; END IF;
      bval := substr(b, pos + 1, v::integer); pos := pos + v::integer;
    ELSIF wire = 1 THEN
      bval := substr(b, pos + 1, 8); pos := pos + 8;
    ELSIF wire = 5 THEN
      bval := substr(b, pos + 1, 4); pos := pos + 4;
    ELSE
      RAISE EXCEPTION 'unsupported wire type %', wire;
    END IF;
    IF pos > n THEN RAISE EXCEPTION 'truncated message'; END IF;
    RETURN NEXT;
  END LOOP;
END $$;

-- The last value of a varint field (protobuf: the last occurrence wins), or NULL.
CREATE FUNCTION perdure_pb_int(b bytea, field integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (SELECT f.ival FROM perdure_pb_fields(b) WITH ORDINALITY f(num, wire, ival, bval, o)
         WHERE f.num = field AND f.wire = 0 ORDER BY f.o DESC LIMIT 1);

-- The last value of a length-delimited field (string, bytes, message), or NULL.
CREATE FUNCTION perdure_pb_bytes(b bytea, field integer) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (SELECT f.bval FROM perdure_pb_fields(b) WITH ORDINALITY f(num, wire, ival, bval, o)
         WHERE f.num = field AND f.wire = 2 ORDER BY f.o DESC LIMIT 1);

CREATE FUNCTION perdure_pb_text(b bytea, field integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN convert_from(perdure_pb_bytes(b, field), 'UTF8');

-- A JSON array of the values of a repeated varint field (packed or not).
CREATE FUNCTION perdure_pb_ints_json(vals bigint[], packed bytea[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  out text[] := ARRAY[]::text[];
  p bytea;
  v bigint;
BEGIN
  FOR i IN 1 .. coalesce(cardinality(vals), 0) LOOP
    IF vals[i] IS NOT NULL THEN
      out := out || vals[i]::text;
    ELSIF packed[i] IS NOT NULL THEN
      p := packed[i];
      DECLARE pos integer := 0; shift integer; byte integer;
      BEGIN
        WHILE pos < length(p) LOOP
          v := 0; shift := 0;
          LOOP
            byte := get_byte(p, pos); pos := pos + 1;
            IF shift < 64 THEN v := v | ((byte & 127)::bigint << shift); END IF;
            EXIT WHEN byte < 128;
            shift := shift + 7;
          END LOOP;
          out := out || v::text;
        END LOOP;
      END;
    END IF;
  END LOOP;
  RETURN '[' || array_to_string(out, ',') || ']';
END $$;

-- A protobuf message as the JSON introspection shows (entries.py `_fields`):
-- set fields by field number, bytes as byte arrays, Value as its content's
-- bytes, Header as {name, value}; `lite` leaves out payloads. Walks the
-- connection's pb_field catalogue (msg, num, name, kind, repeated, presence, nested).
CREATE FUNCTION perdure_pb_json(b bytea, msg text, lite boolean) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  f record;
  parts text[] := ARRAY[]::text[];
  name text;
  val text;
  has_name boolean := false;
BEGIN
  FOR f IN
    SELECT d.num, d.name, d.kind, d.repeated, d.presence, d.nested,
           array_agg(p.ival ORDER BY p.o) AS ivals, array_agg(p.bval ORDER BY p.o) AS bvals
      FROM perdure_pb_fields(b) WITH ORDINALITY p(num, wire, ival, bval, o)
      JOIN pb_field d ON d.msg = perdure_pb_json.msg AND d.num = p.num
     GROUP BY d.num, d.name, d.kind, d.repeated, d.presence, d.nested
     ORDER BY d.num
  LOOP
    name := CASE WHEN f.name = 'result_completion_id' THEN 'completion_id' ELSE f.name END;
    IF name = 'name' THEN has_name := true; END IF;
    IF lite AND ((f.kind = 'bytes' AND NOT f.repeated) OR name IN ('headers', 'value', 'parameter', 'content')) THEN
      CONTINUE;
    END IF;
    IF f.repeated THEN
      IF f.kind IN ('int', 'bool') THEN
        val := perdure_pb_ints_json(f.ivals, f.bvals);
      ELSE
        SELECT '[' || coalesce(string_agg(perdure_pb_value(x, f.kind, f.nested, lite), ',' ORDER BY o), '') || ']'
          INTO val FROM unnest(f.bvals) WITH ORDINALITY u(x, o);
      END IF;
    ELSE
      IF NOT f.presence AND (f.ivals[cardinality(f.ivals)] = 0 OR length(f.bvals[cardinality(f.bvals)]) = 0) THEN
        CONTINUE;  -- proto3 implicit presence: a default value is not set
      END IF;
      IF f.kind IN ('int', 'bool') THEN
        val := CASE WHEN f.kind = 'bool' THEN (f.ivals[cardinality(f.ivals)] <> 0)::text
                    ELSE f.ivals[cardinality(f.ivals)]::text END;
      ELSE
        val := perdure_pb_value(f.bvals[cardinality(f.bvals)], f.kind, f.nested, lite);
      END IF;
    END IF;
    parts := parts || (to_json(name)::text || ':' || val);
  END LOOP;
  IF NOT lite AND NOT has_name AND EXISTS (SELECT 1 FROM pb_field d WHERE d.msg = perdure_pb_json.msg AND d.name = 'name') THEN
    parts := parts || '"name":""'::text;
  END IF;
  RETURN '{' || array_to_string(parts, ',') || '}';
END $$;

-- One length-delimited value as JSON: a string, bytes, or a nested message.
CREATE FUNCTION perdure_pb_value(x bytea, kind text, nested text, lite boolean) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
  IF kind = 'string' THEN RETURN to_json(convert_from(x, 'UTF8'))::text; END IF;
  IF kind = 'bytes' THEN RETURN perdure_bytes_json(x); END IF;
  IF nested = 'Value' THEN RETURN perdure_bytes_json(coalesce(perdure_pb_bytes(x, 1), ''::bytea)); END IF;
  IF nested = 'Header' THEN
    RETURN '{"name":' || to_json(coalesce(perdure_pb_text(x, 1), ''))::text
        || ',"value":' || to_json(coalesce(perdure_pb_text(x, 2), ''))::text || '}';
  END IF;
  RETURN perdure_pb_json(x, nested, lite);
END $$;

-- A notification as the JSON introspection shows (entries.py `_notification_json`);
-- `kind` is the name of the command it completes, `is_signal` for Signal.
CREATE FUNCTION perdure_notification_json(b bytea, kind text, is_signal boolean, lite boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  id_f record;
  res_f record;
  ident text := '{}';
  flat text;
  result text := '"Void"';
  ty text;
BEGIN
  SELECT f.num, f.ival, f.bval INTO id_f FROM perdure_pb_fields(b) WITH ORDINALITY f(num, wire, ival, bval, o)
   WHERE f.num IN (1, 2, 3) ORDER BY f.o DESC LIMIT 1;
  IF id_f.num = 1 THEN ident := '{"CompletionId":' || id_f.ival || '}';
  ELSIF id_f.num = 2 THEN ident := '{"SignalIndex":' || id_f.ival || '}';
  ELSIF id_f.num = 3 THEN ident := '{"SignalName":' || to_json(convert_from(id_f.bval, 'UTF8'))::text || '}';
  END IF;
  SELECT f.num, f.bval INTO res_f FROM perdure_pb_fields(b) WITH ORDINALITY f(num, wire, ival, bval, o)
   WHERE f.num IN (4, 5, 6, 16, 17) ORDER BY f.o DESC LIMIT 1;
  IF res_f.num = 5 THEN
    result := CASE WHEN lite THEN '"Success"'
      ELSE '{"Success":' || perdure_bytes_json(coalesce(perdure_pb_bytes(res_f.bval, 1), ''::bytea)) || '}' END;
  ELSIF res_f.num = 6 THEN
    result := CASE WHEN lite THEN '"Failure"'
      ELSE '{"Failure":{"code":' || coalesce(perdure_pb_int(res_f.bval, 1), 0)
        || ',"message":' || to_json(coalesce(perdure_pb_text(res_f.bval, 2), ''))::text || '}}' END;
  ELSIF res_f.num = 16 THEN
    result := '{"InvocationId":' || to_json(convert_from(res_f.bval, 'UTF8'))::text || '}';
  ELSIF res_f.num = 17 THEN
    result := CASE WHEN lite THEN '"StateKeys"'
      ELSE '{"StateKeys":[' || coalesce((
        SELECT string_agg(to_json(convert_from(k.bval, 'UTF8'))::text, ',' ORDER BY k.o)
          FROM perdure_pb_fields(res_f.bval) WITH ORDINALITY k(num, wire, ival, bval, o) WHERE k.num = 1), '')
        || ']}' END;
  END IF;
  ty := CASE WHEN is_signal THEN '"Signal"' ELSE '{"Completion":' || to_json(kind)::text || '}' END;
  IF lite THEN
    RETURN '{"Notification":{"ty":' || ty || ',"id":' || ident || ',"result":' || result || '}}';
  END IF;
  IF is_signal THEN
    RETURN '{"Notification":{"Signal":{"id":' || ident || ',"result":' || result || '}}}';
  END IF;
  flat := CASE WHEN id_f.num = 1 THEN '"completion_id":' || id_f.ival ELSE '"id":' || ident END;
  RETURN '{"Notification":{"Completion":{' || to_json(kind)::text || ':{' || flat || ',"result":' || result || '}}}}';
END $$;
