-- send_batch's checks of the caller and its input, before anything is written:
--   * producer rights: a topic with rows in topic_access (grant_topic) takes messages
--     only from members of those roles, the schema owner and bucketq_admin;
--   * payloads: not NULL, not JSON null; payload plus headers within the topic's
--     max_payload_bytes (headers count against the limit);
--   * headers: a JSON object or NULL;
--   * keys and idempotency keys: 1 to 1024 characters and at most 2048 bytes (UTF-8):
--     they are btree index keys, and a multi-byte key within 1024 characters could
--     otherwise overflow the index row (a raw 54000);
--   * not_before: a finite time (or NULL).
-- Elements are numbered by position (1..n) whatever the arrays' lower bounds. NULL
-- arrays and arrays of unequal length are left to send_batch's own checks.
create or replace function bucketq._check_send_input(
  t bucketq.topic,
  payloads jsonb[],
  keys text[],
  headers jsonb[],
  idempotency_keys text[],
  not_before timestamptz[]
) returns void
language plpgsql stable as $$
declare
  n int := coalesce(cardinality(payloads), 0);
  v_bad int;
  v_size int;
  v_hsize int;
  v_what text;
  v_p jsonb;
  v_h jsonb;
  v_k text;
begin
  if exists (select 1 from bucketq.topic_access a where a.topic_id = t.topic_id)
     and not exists (select 1 from bucketq.topic_access a where a.topic_id = t.topic_id and bucketq._caller_is(a.role_name))
     and not bucketq._caller_is_admin() then
    raise exception 'permission denied for topic %: role % is not among its producers', t.name, bucketq._caller()
      using errcode = '42501',
            hint = format('An admin grants it with: select bucketq.grant_topic(%L, %L);', t.name, bucketq._caller());
  end if;
  if payloads is null or n = 0
     or (keys is not null and cardinality(keys) <> n)
     or (headers is not null and cardinality(headers) <> n)
     or (idempotency_keys is not null and cardinality(idempotency_keys) <> n)
     or (not_before is not null and cardinality(not_before) <> n) then
    return;
  end if;

  -- Payloads (and headers with them): one pass, the first bad element by position. One
  -- message (send) is checked the same way in plain expressions: a statement to set up
  -- for each check cost a single send a tenth of its time.
  if n = 1 then
    v_p := payloads[array_lower(payloads, 1)];
    v_h := headers[array_lower(headers, 1)];
    v_size := pg_column_size(v_p);
    v_hsize := coalesce(pg_column_size(v_h), 0);
    v_what := case when v_p is null or v_p = 'null'::jsonb then 'null'
                   when v_size > t.max_payload_bytes then 'payload'
                   when v_h is not null and jsonb_typeof(v_h) <> 'object' then 'headers'
                   when v_size + v_hsize > t.max_payload_bytes then 'total' end;
    v_bad := case when v_what is not null then 1 end;
  else
    select u.o, pg_column_size(u.p), coalesce(pg_column_size(u.h), 0),
           case when u.p is null or u.p = 'null'::jsonb then 'null'
                when pg_column_size(u.p) > t.max_payload_bytes then 'payload'
                when u.h is not null and jsonb_typeof(u.h) <> 'object' then 'headers'
                else 'total' end
      into v_bad, v_size, v_hsize, v_what
      from unnest(payloads, headers) with ordinality u(p, h, o)
     where u.p is null or u.p = 'null'::jsonb
        or pg_column_size(u.p) + coalesce(pg_column_size(u.h), 0) > t.max_payload_bytes
        or (u.h is not null and jsonb_typeof(u.h) <> 'object')
     order by u.o limit 1;
  end if;
  if v_bad is not null then
    if v_what = 'null' then
      raise exception 'payload % of % is null (topic %)', v_bad, n, t.name
        using errcode = 'BQ005', hint = 'A payload is any JSON value except null, e.g. ''{}''::jsonb.';
    elsif v_what = 'payload' then
      raise exception 'payload % of % is % bytes, over the limit of % bytes for topic %', v_bad, n, v_size, t.max_payload_bytes, t.name
        using errcode = 'BQ004', hint = 'Send a smaller payload (store large blobs elsewhere and send a reference), or create the topic with a larger max_payload_bytes.';
    elsif v_what = 'headers' then
      raise exception 'headers % of % is not a JSON object (topic %)', v_bad, n, t.name
        using errcode = 'BQ005', hint = 'headers are a JSON object, e.g. ''{"trace-id":"abc"}''::jsonb, or NULL.';
    else
      raise exception 'headers % of % are % bytes: with the payload''s % bytes that is over the limit of % bytes for topic %',
        v_bad, n, v_hsize, v_size, t.max_payload_bytes, t.name
        using errcode = 'BQ004', hint = 'Headers count against the topic''s max_payload_bytes together with the payload: send smaller headers (a trace id, not a document), or create the topic with a larger max_payload_bytes.';
    end if;
  end if;

  if keys is not null then
    if n = 1 then
      v_k := keys[array_lower(keys, 1)];
      v_bad := case when v_k = '' or length(v_k) > 1024 or octet_length(v_k) > 2048 then 1 end;
      v_size := octet_length(v_k);
    else
      select u.o, octet_length(u.k) into v_bad, v_size from unnest(keys) with ordinality u(k, o)
       where u.k = '' or length(u.k) > 1024 or octet_length(u.k) > 2048 order by u.o limit 1;
    end if;
    if v_bad is not null then
      raise exception 'key % of % is empty, longer than 1024 characters or over 2048 bytes (% bytes, topic %)', v_bad, n, v_size, t.name
        using errcode = 'BQ005', hint = 'A key is 1 to 1024 characters and at most 2048 bytes in UTF-8 (a character may take up to 4), or NULL for an unkeyed message.';
    end if;
  end if;
  if idempotency_keys is not null then
    if n = 1 then
      v_k := idempotency_keys[array_lower(idempotency_keys, 1)];
      v_bad := case when v_k = '' or length(v_k) > 1024 or octet_length(v_k) > 2048 then 1 end;
      v_size := octet_length(v_k);
    else
      select u.o, octet_length(u.k) into v_bad, v_size from unnest(idempotency_keys) with ordinality u(k, o)
       where u.k = '' or length(u.k) > 1024 or octet_length(u.k) > 2048 order by u.o limit 1;
    end if;
    if v_bad is not null then
      raise exception 'idempotency key % of % is empty, longer than 1024 characters or over 2048 bytes (% bytes, topic %)', v_bad, n, v_size, t.name
        using errcode = 'BQ005', hint = 'An idempotency key is 1 to 1024 characters and at most 2048 bytes in UTF-8 (a character may take up to 4), or NULL.';
    end if;
  end if;
  if not_before is not null then
    if n = 1 then
      v_bad := case when not isfinite(not_before[array_lower(not_before, 1)]) then 1 end;
    else
      select u.o into v_bad from unnest(not_before) with ordinality u(nb, o)
       where not isfinite(u.nb) order by u.o limit 1;
    end if;
    if v_bad is not null then
      raise exception 'not_before % of % is not a finite time (topic %)', v_bad, n, t.name
        using errcode = 'BQ005', hint = 'not_before is a time such as now() + interval ''5 minutes'', or NULL to deliver at once; ''infinity'' would hold the message (and its key) for ever.';
    end if;
  end if;
end $$;

comment on function bucketq._check_send_input(bucketq.topic, jsonb[], text[], jsonb[], text[], timestamptz[]) is
'send_batch''s checks before it writes: producer rights on the topic (grant_topic), payloads not null and within max_payload_bytes together with their headers, headers JSON objects, keys and idempotency keys 1 to 1024 characters and at most 2048 bytes, not_before finite. Elements are numbered 1..n whatever the arrays'' lower bounds.';
