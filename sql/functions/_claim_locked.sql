-- The body of bucketq.claim_locked, after its group was found (g; bucketq._group checked the
-- caller's access), which calls it (the generic path) or the topic's own copy of it
-- (bucketq_t<topic_id>._claim_locked, see _topic_copies.sql). It runs inside bucketq.claim_locked: that
-- function's owner, search_path and planner settings apply.
create or replace function bucketq._claim_locked(
  g bucketq.consumer_group,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, sent_at timestamptz, epoch bigint, xact xid8)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now timestamptz;
  v_owned int[];
  v_busy int[];
  v_scan int[];
  v_scan_epochs bigint[];
  v_moved timestamptz[];
  v_noted boolean;
  v_seen int[];
  v_snap pg_snapshot;
  v_recent bigint;
  v_busy_epochs bigint[];
  v_busy_seqs bigint[];
  v_busy_states "char"[];
  v_over int[];
  v_over_epochs bigint[];
  v_epochs bigint[];
  v_ids bigint[];
  v_inbox_buckets int[];
  v_dead int;
  v_got int := 0;
  v_rows bucketq.message[];
  v_rest int[];
  v_rest_epochs bigint[];
  v_rest_seqs bigint[];
  v_rest_states "char"[];
begin
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('claim_locked', g);
  end if;
  if not exists (select from bucketq._consumer_joined_by_caller(g.group_id, _claim_locked.consumer_id)) then
    perform bucketq._check_consumer('claim_locked', g, consumer_id);
  end if;
  if max_messages is null or max_messages < 1 or max_messages > 10000 then
    raise exception 'claim_locked: invalid max_messages % for group %', coalesce(max_messages::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'max_messages is 1 to 10000.';
  end if;
  if max_per_key is null or max_per_key < 1 or max_per_key > 10000 then
    raise exception 'claim_locked: invalid max_per_key % for group %', coalesce(max_per_key::text, 'NULL'), g.name
      using errcode = 'BQ005',
            hint = 'max_per_key is 1 (only the head of each key) to 10000 (a run of up to that many consecutive messages of a key, to be handled and acked in key_seq order).';
  end if;

  v_now := bucketq._now();
  -- (A bucket's ownership is live while its owner's heartbeat is: _consumer_now.)
  select array_agg(o.bucket), array_agg(o.epoch), array_agg(o.moved_at) into v_owned, v_epochs, v_moved
    from bucketq._consumer_now c
    join bucketq.bucket_owner o on o.group_id = c.group_id and o.owner = c.consumer_id
   where c.group_id = g.group_id and c.consumer_id = _claim_locked.consumer_id
     and c.heartbeat_at > v_now - g.session_timeout
     and (buckets is null or o.bucket = any(buckets));
  -- Buckets named that this consumer does not own may be out of range: then say so.
  if buckets is not null and coalesce(cardinality(v_owned), 0) < cardinality(buckets) then
    perform bucketq._check_buckets('claim_locked', g, buckets);
  end if;
  if v_owned is null then
    if not exists (select 1 from bucketq._consumer_now c
                    where c.group_id = g.group_id and c.consumer_id = _claim_locked.consumer_id
                      and c.heartbeat_at > v_now - g.session_timeout) then
      raise exception 'claim_locked: consumer % is not a live member of group %', _claim_locked.consumer_id, g.name
        using errcode = 'BQ008',
              hint = format('Call bucketq.join(%L, %L) first, then bucketq.heartbeat well within the session timeout (%s).',
                            g.name, _claim_locked.consumer_id, g.session_timeout);
    end if;
    return;
  end if;

  -- Attempts of transactions that ended without committing count first, so a message
  -- that crashed its worker comes alone (no run) and is dead-lettered when they are spent.
  if exists (select 1 from bucketq.attempt_log a where a.group_id = g.group_id) then
    perform bucketq._settle_attempts(g);
  end if;
  -- Which buckets' logs have anything to do (_log_busy, one statement). Batches from
  -- them that ended without settling come back first (to the inbox, handed out below).
  -- Of 32 buckets or more, only those not found idle by this session's last claim, and
  -- those sent to since (_log_quiet); what this one finds idle is noted for the next
  -- (_log_quiet_save). Below 32, looking at each costs no more than reading the note. A
  -- claim of some buckets only neither reads nor writes it.
  v_noted := buckets is null and cardinality(v_owned) >= 32;
  if v_noted then
    select q.scan, q.scan_epochs, q.snap into v_scan, v_scan_epochs, v_snap
      from bucketq._log_quiet(g, _claim_locked.consumer_id, v_owned, v_epochs, v_moved, v_now) q;
  else
    v_scan := v_owned;
    v_scan_epochs := v_epochs;
  end if;
  if cardinality(v_scan) > 0 then
    -- (A variable, not the call: a volatile call among its arguments keeps Postgres from
    -- inlining _log_busy.)
    v_recent := coalesce(pg_sequence_last_value('bucketq.progress_seq_seq'), 0) - 64 * cardinality(v_scan);
    select array_agg(b.bucket) filter (where b.state <> 'l'), array_agg(b.epoch) filter (where b.state <> 'l'),
           array_agg(b.seq) filter (where b.state <> 'l'), array_agg(b.state) filter (where b.state <> 'l'),
           array_agg(b.bucket) filter (where b.state = 'o'), array_agg(b.epoch) filter (where b.state = 'o'),
           array_agg(b.bucket)
      into v_busy, v_busy_epochs, v_busy_seqs, v_busy_states, v_over, v_over_epochs, v_seen
      from bucketq._log_busy(g, v_scan, v_scan_epochs, v_now, v_recent) b;
  end if;
  if v_noted then
    perform bucketq._log_quiet_save(g, _claim_locked.consumer_id, v_snap, v_seen, v_now);
  end if;
  if v_over is not null then
    perform bucketq._log_expire_due(g, v_over, v_over_epochs, v_now);
  end if;

  if exists (select 1 from bucketq.inbox i
              where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
                and i.bucket = any(v_owned)) then
    perform bucketq._ready_due(g, v_owned, v_now, max_messages);
  end if;

  -- Ready messages only from buckets no other batch is reading the log of, and none
  -- may read it while we hold them: their cursor rows FOR KEY SHARE until we end (a log
  -- read locks its bucket's FOR UPDATE, SKIP LOCKED). A log read that finds a key's
  -- later message locks the key's inbox row FOR KEY SHARE (_log_chunk), which does not
  -- conflict with our hold on it; two locked batches, each holding a retry whose key the
  -- other read further in the log, then each waited in its ack for the other's lock (a
  -- deadlock: one rolled back, its messages handled again).
  select array_agg(k.bucket) into v_inbox_buckets from (
    select k.bucket from bucketq.cursor k
     where k.group_id = g.group_id
       and k.bucket = any(array(select distinct r.bucket from (
             select h.bucket from bucketq.inbox h
              where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned)
              order by h.msg_id limit max_messages) r))
     order by k.bucket
       for key share skip locked) k;

  -- (None ready, or all in buckets held elsewhere: the usual case, one statement.)
  if v_inbox_buckets is not null then
    -- As in claim: ready keys, oldest head first, each with its run. FOR NO KEY UPDATE:
    -- producers' commit-time checks (FOR KEY SHARE) do not wait for the handlers.
    select array_agg(v.msg_id)
      into v_ids
      from (select c.msg_id,
                   first_value(c.msg_id) over w = c.head_id
                   and coalesce(c.key_seq - first_value(c.key_seq) over w, 0) = row_number() over w - 1 as keep
              from (select coalesce(x.msg_id, h.msg_id) as msg_id, h.msg_id as head_id, x.key_seq
                      from (select h.msg_id, h.key_id, h.key_seq, h.attempts from bucketq.inbox h
                             where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_inbox_buckets)
                             order by h.msg_id
                             limit max_messages
                               for no key update skip locked) h
                      left join lateral (
                        select x.msg_id, x.key_seq from bucketq.inbox x
                         where x.group_id = g.group_id and x.key_id = h.key_id
                           and x.key_seq >= h.key_seq
                           and x.key_seq < h.key_seq + case when h.attempts = 0 then max_per_key else 1 end
                           and (x.msg_id = h.msg_id
                                or (x.state = 3 and (x.available_at is null or x.available_at <= v_now)))
                         order by x.key_seq
                           for no key update skip locked) x on true
                     limit max_messages) c
            window w as (partition by c.head_id order by c.key_seq)) v
     where v.keep;
  end if;
  -- A message we just took that an aborted transaction held when the first settling
  -- ran (locked elsewhere then) counts now: we hold it, no one else can.
  if v_ids is not null
     and exists (select 1 from bucketq.attempt_log a
                  where a.group_id = g.group_id and a.msg_ids && v_ids and bucketq._xact_status(a.xact) = 'aborted') then
    v_dead := bucketq._settle_attempts(g);
    if v_dead > 0 and g.on_exhausted = 'block' then
      -- A head of ours just dead-lettered holds its key: the rest of its run stays.
      select array_agg(u.id) into v_ids from unnest(v_ids) u(id)
       where not exists (select 1 from bucketq.inbox i join bucketq.inbox y on y.group_id = i.group_id and y.key_id = i.key_id
                          where i.group_id = g.group_id and i.msg_id = u.id and y.state = 4);
    end if;
  end if;
  if v_ids is not null then
  return query
  with held as materialized (
    select i.msg_id, i.bucket, i.key_id, i.key_seq, i.attempts, i.sent_at, ob.epoch
      from bucketq.inbox i
      join unnest(v_owned, v_epochs) as ob(bucket, epoch) on ob.bucket = i.bucket
     where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state + 0 in (0, 3)
  )
  , m as materialized (
    select x.id, x.sent_at, x.key, x.payload, x.headers from bucketq.message x
     where x.topic_id = g.topic_id
       and x.id = any(v_ids)
       and x.sent_at >= (select min(l.sent_at) from held l)
       and x.sent_at <= (select max(l.sent_at) from held l)
  )
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts + 1, l.sent_at, l.epoch,
         pg_current_xact_id()
    from held l
    join m on m.id = l.msg_id and m.sent_at = l.sent_at
   order by min(l.msg_id) over (partition by coalesce(l.key_id, -l.msg_id)), l.key_seq nulls first, l.msg_id;
  get diagnostics v_got = row_count;
  end if;

  -- Then the normal flow: the buckets' logs past their checkpoints. Each bucket read
  -- stays locked (its cursor row) until this transaction ends. Buckets in the usual
  -- state go through one statement (_log_claim_next); the others, and any it finds
  -- otherwise, through _log_claim.
  if v_got < max_messages and v_busy is not null then
    select n.rows, n.rest, n.rest_epochs, n.rest_seqs, n.rest_states
      into v_rows, v_rest, v_rest_epochs, v_rest_seqs, v_rest_states
      from bucketq._log_claim_next(g, _claim_locked.consumer_id, v_busy, v_busy_epochs, v_busy_seqs, v_busy_states,
                                   max_messages - v_got, max_per_key, v_now, null, null) n;
  end if;
  -- Both kinds' messages in one result, oldest key first, each key's run in key_seq
  -- order (as one _log_claim call returned them).
  if v_rows is not null or (v_got < max_messages and v_rest is not null) then
    return query
    select u.msg_id, u.bucket, u.key, u.key_seq, u.payload, u.headers, 1, u.sent_at, u.epoch, pg_current_xact_id()
      from (select x.id as msg_id, x.bucket, x.key, x.key_id, x.key_seq, x.payload, x.headers, x.sent_at,
                   v_busy_epochs[array_position(v_busy, x.bucket)] as epoch
              from unnest(v_rows) as x
            union all
            select l.msg_id, l.bucket, l.key, l.key_id, l.key_seq, l.payload, l.headers, l.sent_at, l.epoch
              from bucketq._log_claim(g, _claim_locked.consumer_id, v_rest, v_rest_epochs, v_rest_seqs, v_rest_states,
                                      max_messages - v_got - coalesce(cardinality(v_rows), 0), max_per_key,
                                      v_now, null, null) l
             where v_rest is not null and v_got + coalesce(cardinality(v_rows), 0) < max_messages) u
     order by min(u.msg_id) over (partition by coalesce(u.key_id, -u.msg_id)), u.key_seq nulls first, u.msg_id;
  end if;
end $$;

comment on function bucketq._claim_locked(bucketq.consumer_group, text, int, int[], int) is
'Internal: the body of bucketq.claim_locked (see there), for its topic dispatch; a copy of it per topic is in schema bucketq_t<topic_id>.';
