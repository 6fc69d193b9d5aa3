create or replace function bucketq._send(
  topic text,
  payloads jsonb[],
  keys text[],
  headers jsonb[],
  idempotency_keys text[],
  not_before timestamptz[]
) returns bigint[]
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
set jit = off
-- Generic plans, made once per session: a custom plan of a query over the log's
-- partitions took 4 ms to plan (more with every partition), on every call.
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  t bucketq.topic;
  n int := coalesce(cardinality(payloads), 0);
  v_now timestamptz;
  v_reserved bigint[];
  v_distinct bigint;   -- distinct idempotency keys in this batch
  v_all_new boolean;   -- this send reserved every one of them
  v_ids bigint[];      -- per input position: the id already known (idempotency hit or reservation)
  v_new boolean[];     -- per input position: this payload becomes a new message
  v_keys text[];
  v_key_ids bigint[];
  v_key_base bigint[]; -- per key: its last key_seq before this batch
  v_counts bigint[];   -- per key: how many new messages of it this batch has
  v_taken record;       -- _take_key_seqs: key_ids, bases
  v_key text;
  v_i int;
  v_ords bigint[];     -- per input position: its order inside a log window
  v_fresh bigint[];    -- per input position: a new id, taken in input order
  v_xid xid8;
  v_k text;            -- a single message's key (n = 1)
begin
  t := bucketq._topic(_send.topic);
  -- Every element is checked there, before anything is written.
  perform bucketq._check_send_input(t, payloads, keys, _send.headers, idempotency_keys, _send.not_before);
  if payloads is null then
    raise exception 'payloads must not be NULL (topic %)', t.name
      using errcode = 'BQ005', hint = 'Pass an array of jsonb payloads, e.g. array[''{"a":1}'']::jsonb[].';
  end if;
  if (keys is not null and cardinality(keys) <> n)
     or (_send.headers is not null and cardinality(_send.headers) <> n)
     or (idempotency_keys is not null and cardinality(idempotency_keys) <> n)
     or (_send.not_before is not null and cardinality(_send.not_before) <> n) then
    raise exception 'send_batch arrays differ in length (topic %): payloads %, keys %, headers %, idempotency_keys %, not_before %',
      t.name, n, coalesce(cardinality(keys)::text, '-'), coalesce(cardinality(_send.headers)::text, '-'),
      coalesce(cardinality(idempotency_keys)::text, '-'), coalesce(cardinality(_send.not_before)::text, '-')
      using errcode = 'BQ005', hint = 'keys, headers, idempotency_keys and not_before are NULL or have one element per payload (use NULL elements for "none").';
  end if;
  if n = 0 then
    return '{}';
  end if;

  -- Shared with other producers, exclusive for create_group: a group being created
  -- waits for us, and we see it once it exists.
  perform pg_advisory_xact_lock_shared(bucketq._lock_ns(), t.topic_id);
  if current_setting('transaction_isolation') <> 'read committed' then
    -- Our snapshot may predate a group created since, or a rotation of the per-key
    -- counters (maintain(); we would not see the rows it moved): locking the topic row
    -- raises a serialization failure (40001) if so, and the caller retries the
    -- transaction.
    begin
      perform 1 from bucketq.topic x where x.topic_id = t.topic_id for share;
    exception when serialization_failure then
      raise exception 'could not serialize access to topic %: it changed after this transaction''s snapshot was taken (a consumer group was created, or maintain() moved its log floor or rotated its per-key counters)', t.name
        using errcode = 'serialization_failure', detail = sqlerrm,
              hint = 'Retry the transaction. In REPEATABLE READ or SERIALIZABLE, a send whose snapshot predates such a change must start over; READ COMMITTED producers wait instead.';
    end;
  end if;
  -- Never below the log's floor (topic.log_from), read after that lock: maintain()
  -- moves it while holding the lock exclusively, once the producers in flight are done,
  -- and claims no longer read the partitions below it. Only a transaction that began
  -- before the floor moved sends at the floor instead of its start.
  v_now := greatest(bucketq._now(), (select x.log_from from bucketq.topic x where x.topic_id = t.topic_id));
  if not exists (select 1 from bucketq.log_partition p
                  where p.topic_id = t.topic_id and p.lower_bound <= v_now and p.upper_bound > v_now) then
    -- maintain() has not run for a while: make the partitions now rather than fail.
    perform bucketq._lock_maintenance('send_batch');
    perform bucketq._ensure_partitions(t);
  end if;

  -- Our transaction id before anything else: every message sent after a snapshot
  -- was taken must take its ord after that snapshot (see message_ord_seq below).
  v_xid := pg_current_xact_id();
  -- (One message, the usual send: plain expressions, no statement to set up.)
  if n = 1 then
    v_fresh := array[nextval('bucketq.message_id_seq')];
  else
    select array_agg(nextval('bucketq.message_id_seq') order by u.o) into v_fresh
      from generate_series(1, n) as u(o);
  end if;

  -- Idempotency: reserve each new key with the id of its first position. A concurrent
  -- sender of the same key makes us wait for its commit; the next statement then sees
  -- its row.
  if idempotency_keys is not null and cardinality(array_remove(idempotency_keys, null)) > 0 then
    with d as (
      select u.ik, min(u.o) as first_o from unnest(idempotency_keys) with ordinality u(ik, o)
       where u.ik is not null group by u.ik
    ),
    reserved as (
      insert into bucketq.idempotency as x (topic_id, idempotency_key, msg_id, sent_at)
      select t.topic_id, d.ik, v_fresh[d.first_o], v_now from d order by d.ik
      on conflict (topic_id, idempotency_key) do nothing
      returning x.msg_id
    )
    select (select array_agg(r.msg_id) from reserved r), (select count(*) from d) into v_reserved, v_distinct;

    -- Every key new (the usual case): its id is the one just reserved, that of its first
    -- position, and nothing is read. Else the ids from their rows (a probe each).
    v_all_new := coalesce(cardinality(v_reserved), 0) = v_distinct;
    if not v_all_new then
      v_ids := bucketq._idempotency_ids(t.topic_id, idempotency_keys);
    end if;
    select array_agg(case when u.ik is null then null when v_all_new then v_fresh[u.first_o] else v_ids[u.o] end order by u.o),
           array_agg(u.ik is null or (u.o = u.first_o and (v_all_new or v_ids[u.o] = any(coalesce(v_reserved, '{}')))) order by u.o)
      into v_ids, v_new
      from (select uu.ik, uu.o, min(uu.o) over (partition by uu.ik) as first_o
              from unnest(idempotency_keys) with ordinality uu(ik, o)) u;
  end if;

  -- Per-key counters, locked until we commit: the gapless key_seq in commit order
  -- (see _take_key_seqs: the lock is a row lock, the counter append-only and rotated).
  if keys is not null then
    if n = 1 then
      v_k := keys[array_lower(keys, 1)];
      if v_k is not null and (v_new is null or v_new[1]) then
        v_keys := array[v_k];
        v_counts := array[1::bigint];
      end if;
    else
      select array_agg(c.key order by c.key), array_agg(c.c order by c.key)
        into v_keys, v_counts
        from (select u.k as key, count(*) as c
                from unnest(keys) with ordinality u(k, o)
               where u.k is not null and (v_new is null or v_new[u.o])
               group by u.k) c;
    end if;
    if v_keys is null then
      null;
    elsif current_setting('transaction_isolation') = 'read committed' then
      -- (in v_keys' order)
      v_taken := bucketq._take_key_seqs(t.topic_id, v_keys, v_counts);
      v_key_ids := v_taken.key_ids;
      v_key_base := v_taken.bases;
    else
      -- Our snapshot may predate the commit of a key's previous sender: key by key, so
      -- that the error names the key. One subtransaction per send, in these isolation
      -- levels only.
      v_key_ids := '{}'; v_key_base := '{}';
      begin
        for v_i in 1 .. cardinality(v_keys) loop
          v_key := v_keys[v_i];
          v_taken := bucketq._take_key_seqs(t.topic_id, array[v_key], array[v_counts[v_i]]);
          v_key_ids := v_key_ids || v_taken.key_ids;
          v_key_base := v_key_base || v_taken.bases;
        end loop;
      exception when unique_violation or serialization_failure then
        raise exception 'could not serialize access to key % of topic %: another transaction sent to it after this transaction''s snapshot was taken', bucketq._quote_input(v_key), t.name
          using errcode = 'serialization_failure', detail = sqlerrm,
                hint = 'Retry the transaction. In REPEATABLE READ or SERIALIZABLE, a send to a key another transaction sent to since this one began must start over; READ COMMITTED producers wait instead.';
      end;
    end if;
  end if;

  -- The order inside a log window, taken now that we hold our keys' counters: the
  -- sender of a key's previous message has committed, and its ord is lower than ours.
  -- In input order, which is key_seq order for each key.
  if n = 1 then
    v_ords := array[nextval('bucketq.message_ord_seq')];
  else
    select array_agg(nextval('bucketq.message_ord_seq') order by u.o) into v_ords
      from generate_series(1, n) as u(o);
  end if;

  -- The messages, by input position. v_keys is sorted, so a keyed message's key is
  -- v_keys[dense_rank() over key order] (no join by key text), and its key_seq follows
  -- its key's base in input order.
  if n = 1 then
    -- (Its elements by position 1, whatever the arrays' lower bounds.)
    if v_new is null or v_new[1] then
      insert into bucketq.message (id, topic_id, sent_at, bucket, key, key_id, key_seq, payload, headers, not_before,
                                   idempotency_key, xid, ord)
      values (coalesce(v_ids[1], v_fresh[1]), t.topic_id, v_now,
              bucketq._bucket_of(v_k, coalesce(v_ids[1], v_fresh[1]), t.buckets),
              v_k, v_key_ids[1], v_key_base[1] + 1, payloads[array_lower(payloads, 1)],
              _send.headers[array_lower(_send.headers, 1)], _send.not_before[array_lower(_send.not_before, 1)],
              idempotency_keys[array_lower(idempotency_keys, 1)], v_xid, v_ords[1]);
    end if;
  elsif keys is null then
    insert into bucketq.message (id, topic_id, sent_at, bucket, payload, headers, not_before, idempotency_key, xid, ord)
    select r.id, t.topic_id, v_now, bucketq._bucket_of(null, r.id, t.buckets), r.p, r.h, r.nb, r.ik, v_xid, v_ords[r.o]
      from (select coalesce(v_ids[u.o], v_fresh[u.o]) as id, u.*
              from unnest(payloads, _send.headers, idempotency_keys, _send.not_before)
                   with ordinality as u(p, h, ik, nb, o)
             where v_new is null or v_new[u.o]) r;
  else
    insert into bucketq.message (id, topic_id, sent_at, bucket, key, key_id, key_seq, payload, headers, not_before,
                                 idempotency_key, xid, ord)
    select r.id, t.topic_id, v_now, bucketq._bucket_of(r.k, r.id, t.buckets),
           r.k, v_key_ids[r.key_no], v_key_base[r.key_no] + r.nth, r.p, r.h, r.nb, r.ik, v_xid, v_ords[r.o]
      from (select coalesce(v_ids[u.o], v_fresh[u.o]) as id, u.*,
                   -- (NULL keys sort last: the keyed ones are numbered 1, 2, ... as in v_keys)
                   dense_rank() over (order by u.k) as key_no,
                   row_number() over (partition by u.k order by u.o) as nth
              from unnest(payloads, keys, _send.headers, idempotency_keys, _send.not_before)
                   with ordinality as u(p, k, h, ik, nb, o)
             where v_new is null or v_new[u.o]) r;
  end if;

  -- One notification per statement, a hint to wake workers: the topic, and the bucket
  -- when the messages all went to one (a single send, a batch of one key), so that
  -- only that bucket's owner claims, and only there (src/worker/wakeup.ts). Postgres
  -- sends identical notifications once a transaction: a transaction of many sends
  -- queues at most one a bucket and one for the topic, never one a message.
  perform pg_notify('bucketq', case
    when n = 1 and v_k is null
      then t.name || ':' || bucketq._bucket_of(null, coalesce(v_ids[1], v_fresh[1]), t.buckets)
    when cardinality(v_keys) = 1 and (n = 1 or array_position(keys, null) is null)
      then t.name || ':' || bucketq._bucket_of(v_keys[1], null, t.buckets)
    else t.name end);
  -- The ids in input order: a repeated idempotency key's original, else the new one.
  if v_ids is null then
    return v_fresh;
  end if;
  return (select array_agg(coalesce(v_ids[u.o], u.id) order by u.o) from unnest(v_fresh) with ordinality as u(id, o));
end $$;

comment on function bucketq._send(text, jsonb[], text[], jsonb[], text[], timestamptz[]) is
'Internal: the body of send_batch and send (see send_batch), as an array of the ids in input order, so that send calls it as a plain expression.';
