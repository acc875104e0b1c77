-- Perdure PostgreSQL schema, migration 9: perdure_commit takes the indexed columns of every
-- invocation record from the processor (batch.InvocationIndex: status, service, key, created_at,
-- expires_at), as the SQLite store does, so a commit no longer parses each record as JSON (the
-- profile's largest cost inside PostgreSQL: every record is written about four times per
-- invocation). A record sent without them (NULL status) is still parsed, as before. The rest of
-- the function is as in migration 5.

DROP FUNCTION perdure_commit(
  text, bigint[], bigint, integer, bytea[], bytea[], bytea[], bytea[], integer[], integer[], bytea[],
  bigint[], bigint[], bytea[], integer[], bigint[], bigint[], bytea[], integer[], bigint[], smallint[],
  text[], text[], bigint[], bytea[], bytea[], bigint[], text[]);

CREATE FUNCTION perdure_commit(
  p_owner text, p_epochs bigint[], p_seq bigint, p_bits integer,
  inv_ids bytea[], inv_recs bytea[],
  inv_status text[], inv_service text[], inv_key text[], inv_created bigint[], inv_expires bigint[],
  jdel_ids bytea[],
  j_ids bytea[], j_idx integer[], j_type integer[], j_body bytea[], j_ts bigint[],
  td_wake bigint[], td_ids bytea[], td_kind integer[], td_arg bigint[],
  ta_wake bigint[], ta_ids bytea[], ta_kind integer[], ta_arg bigint[],
  op_kind smallint[], op_service text[], op_key text[], op_pk bigint[],
  op_a bytea[], op_b bytea[], op_seq bigint[], op_name text[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  touched integer[];
  fenced integer;
  i integer;
  part integer;
BEGIN
  touched := ARRAY(
    SELECT perdure_id_partition(x, p_bits) FROM unnest(inv_ids || jdel_ids || j_ids || td_ids || ta_ids) x
    UNION SELECT perdure_pk_partition(k, p_bits) FROM unnest(op_pk) k);
  UPDATE partition_lease l SET last_batch = p_seq
   WHERE l.partition = ANY (touched) AND l.owner = p_owner AND l.epoch = p_epochs[l.partition + 1]
     AND l.expires_at > now();
  GET DIAGNOSTICS fenced = ROW_COUNT;
  IF fenced <> cardinality(touched) THEN
    RAISE EXCEPTION 'perdure: the lease of a partition this batch writes is no longer %''s', p_owner
      USING ERRCODE = 'PF001';
  END IF;

  IF cardinality(inv_ids) > 0 THEN
    INSERT INTO invocation AS t (partition, id, status, service, key, created_at, expires_at, record)
    SELECT perdure_id_partition(u.id, p_bits), u.id,
           coalesce(u.st, u.j ->> 'status'),
           CASE WHEN u.st IS NULL THEN u.j ->> 's' ELSE u.sv END,
           CASE WHEN u.st IS NULL THEN u.j ->> 'k' ELSE u.k END,
           CASE WHEN u.st IS NULL THEN (u.j ->> 'c')::bigint ELSE u.c END,
           CASE WHEN u.st IS NULL THEN perdure_expires_at(u.j) ELSE u.e END,
           u.rec
      FROM (SELECT x.id, x.rec, x.st, x.sv, x.k, x.c, x.e,
                   CASE WHEN x.st IS NULL THEN convert_from(x.rec, 'UTF8')::jsonb END AS j
              FROM unnest(inv_ids, inv_recs, inv_status, inv_service, inv_key, inv_created, inv_expires)
                   AS x(id, rec, st, sv, k, c, e)
             WHERE x.rec IS NOT NULL) u
    ON CONFLICT (partition, id) DO UPDATE
      SET status = excluded.status, expires_at = excluded.expires_at, record = excluded.record;
    DELETE FROM invocation t USING unnest(inv_ids, inv_recs) AS x(id, rec)
     WHERE x.rec IS NULL AND t.partition = perdure_id_partition(x.id, p_bits) AND t.id = x.id;
  END IF;
  IF cardinality(jdel_ids) > 0 THEN
    DELETE FROM journal t USING unnest(jdel_ids) AS x(id)
     WHERE t.partition = perdure_id_partition(x.id, p_bits) AND t.id = x.id;
  END IF;
  IF cardinality(j_ids) > 0 THEN
    INSERT INTO journal (partition, id, idx, type, body, appended_at, writer_epoch)
    SELECT perdure_id_partition(x.id, p_bits), x.id, x.idx, x.ty, x.body, x.ts,
           p_epochs[perdure_id_partition(x.id, p_bits) + 1]
      FROM unnest(j_ids, j_idx, j_type, j_body, j_ts) AS x(id, idx, ty, body, ts);
  END IF;
  IF cardinality(td_ids) > 0 THEN
    DELETE FROM timer t USING unnest(td_wake, td_ids, td_kind, td_arg) AS x(wake, id, kind, arg)
     WHERE t.partition = perdure_id_partition(x.id, p_bits) AND t.wake_at = x.wake AND t.id = x.id
       AND t.kind = x.kind AND t.arg = x.arg;
  END IF;
  IF cardinality(ta_ids) > 0 THEN
    INSERT INTO timer (partition, wake_at, id, kind, arg)
    SELECT perdure_id_partition(x.id, p_bits), x.wake, x.id, x.kind, x.arg
      FROM unnest(ta_wake, ta_ids, ta_kind, ta_arg) AS x(wake, id, kind, arg)
    ON CONFLICT DO NOTHING;
  END IF;

  FOR i IN 1 .. coalesce(cardinality(op_kind), 0) LOOP
    part := perdure_pk_partition(op_pk[i], p_bits);
    CASE op_kind[i]
    WHEN 1 THEN  -- state set
      INSERT INTO state (partition, service, key, skey, value, pk)
      VALUES (part, op_service[i], op_key[i], op_a[i], op_b[i], op_pk[i])
      ON CONFLICT (partition, service, key, skey) DO UPDATE SET value = excluded.value;
    WHEN 2 THEN  -- state delete
      DELETE FROM state WHERE partition = part AND service = op_service[i] AND key = op_key[i]
         AND skey = op_a[i];
    WHEN 3 THEN  -- state clear
      DELETE FROM state WHERE partition = part AND service = op_service[i] AND key = op_key[i];
    WHEN 4 THEN  -- lock set
      INSERT INTO lock (partition, service, key, id, pk)
      VALUES (part, op_service[i], op_key[i], op_a[i], op_pk[i])
      ON CONFLICT (partition, service, key) DO UPDATE SET id = excluded.id;
    WHEN 5 THEN  -- lock delete
      DELETE FROM lock WHERE partition = part AND service = op_service[i] AND key = op_key[i];
    WHEN 6 THEN  -- inbox add
      INSERT INTO inbox (partition, service, key, seq, id, pk)
      VALUES (part, op_service[i], op_key[i], op_seq[i], op_a[i], op_pk[i]);
    WHEN 7 THEN  -- inbox delete
      DELETE FROM inbox WHERE partition = part AND service = op_service[i] AND key = op_key[i]
         AND seq = op_seq[i];
    WHEN 8 THEN  -- promise put
      INSERT INTO promise (partition, service, key, name, record, pk)
      VALUES (part, op_service[i], op_key[i], op_name[i], op_a[i], op_pk[i])
      ON CONFLICT (partition, service, key, name) DO UPDATE SET record = excluded.record;
    WHEN 9 THEN  -- promise clear
      DELETE FROM promise WHERE partition = part AND service = op_service[i] AND key = op_key[i];
    END CASE;
  END LOOP;
END $$;

-- A record (JSON, ~0.8 kB, rewritten about four times per invocation) is compressed inline with
-- lz4 once its row passes 128 bytes, so less of it goes to the WAL and the heap; room is left on
-- each page so that an update keeping status and expiry stays on its page (HOT: no new index
-- entries). Both apply to rows written from now on.
ALTER TABLE invocation SET (fillfactor = 70, toast_tuple_target = 128);
ALTER TABLE invocation ALTER COLUMN record SET COMPRESSION lz4;
