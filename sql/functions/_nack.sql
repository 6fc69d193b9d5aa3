-- The body of bucketq.nack, after its group was found (g; bucketq._group checked the
-- caller's access), which calls it (the generic path) or the topic's own copy of it
-- (bucketq_t<topic_id>._nack, see _topic_copies.sql). It runs inside bucketq.nack: that
-- function's owner, search_path and planner settings apply.
create or replace function bucketq._nack(
  g bucketq.consumer_group,
  msg_ids bigint[],
  lease_tokens bigint[],
  errors text[] default null,
  retry_delay interval default null,
  strict boolean default true,
  consumer_id text default null
) returns table (msg_id bigint, status text, retry_at timestamptz)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now timestamptz;
  v_locked boolean;
  v_held bigint[];
  v_dead bigint[];
  v_dead_errors text[];
  v_stale bigint[];
  v_tails bigint[];
  v_waiting_keys bigint[];
  v_ctids tid[];
  v_xact xid8;
  v_admin boolean;
  v_caller name;
begin
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('nack', g);
  end if;
  v_locked := lease_tokens is null;
  if v_locked then
    perform bucketq._check_locked_args('nack', g, msg_ids, _nack.consumer_id);
    v_xact := pg_current_xact_id();
  else
    perform bucketq._check_lease_args('nack', msg_ids, lease_tokens);
  end if;
  if _nack.consumer_id is not null then
    perform bucketq._check_consumer('nack', g, _nack.consumer_id);
  end if;
  v_admin := bucketq._caller_is_admin();
  v_caller := bucketq._caller();
  if errors is not null and cardinality(errors) <> cardinality(msg_ids) then
    raise exception 'nack: errors has % elements for % messages (group %)', cardinality(errors), cardinality(msg_ids), g.name
      using errcode = 'BQ005', hint = 'Pass one error text per message (NULL elements allowed), or NULL.';
  end if;
  if retry_delay is not null and retry_delay < interval '0' then
    raise exception 'nack: retry_delay must not be negative (got %, group %)', retry_delay, g.name
      using errcode = 'BQ005', hint = 'Pass NULL for the group''s exponential backoff, or a delay >= 0.';
  end if;
  if retry_delay is not null and not isfinite(retry_delay) then
    raise exception 'nack: retry_delay % is not a finite interval (group %)', retry_delay, g.name
      using errcode = 'BQ005',
            hint = 'Pass NULL for the group''s exponential backoff, or a finite delay >= 0: ''infinity'' would hold the key for ever.';
  end if;
  v_now := bucketq._now();

  -- Messages handed out from the log: their batch moves to the inbox (its checkpoint
  -- passes it), where the rest of this function treats them like any other.
  perform bucketq._log_settle('nack', g, msg_ids, lease_tokens, null, _nack.consumer_id, v_now);

  if v_locked then
    -- A locked row counts its attempt now (a lease counted it when claimed).
    with held as (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.msg_id = any(msg_ids) and i.lease_token is null and i.state + 0 in (0, 3)
         -- rows this transaction holds (claim_locked), or put in the inbox from its log batch
         and (bucketq._xact_holds(v_xact, i.xmax) or bucketq._inserted_here(i.xmin))
         and exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket and o.owner = _nack.consumer_id)
       order by i.key_id, i.msg_id
         for update of i
    ),
    counted as (
      update bucketq.inbox i set attempts = i.attempts + 1
        from held h
       where i.group_id = g.group_id and i.msg_id = h.msg_id
      returning i.msg_id, i.attempts
    )
    select array_agg(c.msg_id),
           array_agg(c.msg_id) filter (where c.attempts >= g.max_attempts),
           array_agg(left(e.err, 10000)) filter (where c.attempts >= g.max_attempts)
      into v_held, v_dead, v_dead_errors
      from counted c
      join unnest(msg_ids, coalesce(errors, array_fill(null::text, array[cardinality(msg_ids)]))) as e(id, err) on e.id = c.msg_id;
  else
    select array_agg(x.msg_id),
           array_agg(x.msg_id) filter (where x.attempts >= g.max_attempts),
           array_agg(left(x.err, 10000)) filter (where x.attempts >= g.max_attempts)
      into v_held, v_dead, v_dead_errors
      from (select i.msg_id, i.attempts, e.err
              from unnest(msg_ids, lease_tokens, errors) as e(id, tok, err)
              -- A probe per id (LATERAL, OFFSET 0: planned on its own). As a join, a plan
              -- made on an empty inbox read the group's whole inbox on every call, and a
              -- worker nacks one message per call.
              cross join lateral (select i.* from bucketq.inbox i
                                   where i.group_id = g.group_id and i.msg_id = e.id
                                   offset 0) i
             where i.lease_token = e.tok and i.state + 0 = 1
               and exists (select 1 from bucketq.bucket_owner o
                            where o.group_id = g.group_id and o.bucket = i.bucket
                              and o.owner = i.consumer_id and o.epoch = i.epoch)
               and (v_admin or exists (select 1 from bucketq.consumer c
                                        where c.group_id = g.group_id and c.consumer_id = i.consumer_id
                                          and c.joined_by = v_caller))
             order by i.key_id, i.msg_id
             for update of i) x;
  end if;

  if coalesce(cardinality(v_held), 0) < cardinality(msg_ids) then
    -- (An id given twice is nacked once: fewer held than given, none stale.)
    select array_agg(distinct u.id order by u.id) into v_stale
      from unnest(msg_ids) u(id) where not exists (select 1 from unnest(v_held) h(id) where h.id = u.id);
  end if;
  if v_stale is not null then
    if v_locked then
      perform bucketq._raise_if_fenced_locked('nack', g, v_stale, _nack.consumer_id);
    else
      perform bucketq._raise_if_fenced('nack', g, msg_ids, lease_tokens);
    end if;
    if strict then
      raise exception 'nack: % of % messages are not % in group % (msg_ids %)',
        cardinality(v_stale), cardinality(msg_ids),
        case when v_locked then 'waiting or ready, unleased' else 'leased with these tokens' end, g.name, bucketq._id_list(v_stale)
        using errcode = 'BQ006',
              detail = 'Their lease expired and they were claimed again, or they were already acked or dead-lettered. Nothing was nacked.',
              hint = 'Roll back; the messages will be delivered again. Pass strict => false for a status per message.';
    end if;
  end if;
  if v_held is null then
    return query select u.id, 'stale'::text, null::timestamptz from unnest(msg_ids) u(id);
    return;
  end if;

  -- The rest of each nacked row's run (same key and lease, later key_seq) waits again.
  -- (A locked claim's run was never taken out of waiting.)
  if not v_locked then
    -- Every row by a probe of its own (LATERAL, OFFSET 0: each planned on its own, by
    -- primary key or by key): the nacked rows, the rest of their runs, then those locked
    -- in key order. As joins or "msg_id = ANY(...)", plans made on an empty inbox read
    -- the group's whole inbox (once per nacked row, or, below Postgres 17, once per call:
    -- it priced = ANY as one descent per element, above reading a small group's rows).
    -- "y.state + 0": inbox_timed (group_id, available_at) is no path to a key's rows.
    select array_agg(x.msg_id) into v_tails from (
      select l.msg_id
        from (select distinct y.key_id, y.msg_id
                from unnest(v_held) as h(id)
                cross join lateral (select n.key_id, n.key_seq, n.lease_token from bucketq.inbox n
                                     where n.group_id = g.group_id and n.msg_id = h.id
                                    offset 0) n
                cross join lateral (select y.key_id, y.msg_id from bucketq.inbox y
                                     where y.group_id = g.group_id and y.key_id = n.key_id and y.key_seq > n.key_seq
                                       and y.lease_token = n.lease_token and y.state + 0 = 1
                                    offset 0) y
               where y.msg_id <> all(v_held)
               order by y.key_id, y.msg_id) t
        cross join lateral (select x.msg_id from bucketq.inbox x
                             where x.group_id = g.group_id and x.msg_id = t.msg_id and x.state = 1
                               for update of x) l) x;
    if v_tails is not null then
      perform bucketq._unlease(g.group_id, v_tails);
    end if;
  end if;

  -- Retry: delayed, and the key stays blocked behind it so order holds. A row with an
  -- earlier row of its key still there waits behind that one (its retry time is kept:
  -- _promote makes it delayed, not ready, when its turn comes).
  -- The rows by their ctids (a TID scan), each found by its primary key first: a join on
  -- msg_id, or "msg_id = ANY(v_held)", made plans that read the group's whole inbox
  -- below Postgres 17 (see above). Safe: these rows are ours, locked since v_held.
  -- (No group_id condition, and "msg_id + 0": with either, plans read the group, or
  -- the whole of inbox_pkey for a msg_id, instead.)
  select array_agg(r.ctid) into v_ctids
    from unnest(v_held) as h(id)
    cross join lateral (select r.ctid from bucketq.inbox r
                         where r.group_id = g.group_id and r.msg_id = h.id offset 0) r
   where h.id <> all(coalesce(v_dead, '{}'));
  update bucketq.inbox i
     set state = case when i.key_id is not null
                       and exists (select 1 from bucketq.inbox y
                                    where y.group_id = i.group_id and y.key_id = i.key_id and y.key_seq < i.key_seq)
                      then 3 else 2 end,
         lease_token = null, last_error = left(e.err, 10000),
         available_at = v_now + coalesce(retry_delay,
                                         least(g.backoff_max, g.backoff_base * power(2, least(i.attempts - 1, 30))))
    from unnest(msg_ids, errors) as e(id, err)
   where i.ctid = any(v_ctids) and i.msg_id + 0 = e.id;
  -- A row that now waits behind an earlier one: if that one waits too (a replayed dead
  -- letter that was waiting for this lease to end), nothing in flight is left to
  -- promote it: promote it now, unless some row of the key is still active.
  -- (Each row by its primary key, LATERAL, OFFSET 0: with "key_id is not null" beside
  -- it, or "msg_id = ANY(v_held)" below Postgres 17, a plan made on an empty inbox read
  -- the group's rows.)
  select array_agg(distinct x.key_id) into v_waiting_keys
    from unnest(v_held) as h(id)
    cross join lateral (select i.key_id, i.state from bucketq.inbox i
                         where i.group_id = g.group_id and i.msg_id = h.id offset 0) x
   where x.state = 3 and x.key_id is not null;
  if v_waiting_keys is not null then
    perform bucketq._promote(g.group_id, v_waiting_keys, v_now, true);
  end if;

  if v_dead is not null then
    perform bucketq._dead_letter(g, v_dead, v_dead_errors);
  end if;
  if v_locked then
    delete from bucketq.attempt_log a where a.group_id = g.group_id and a.xact = pg_current_xact_id();
  end if;

  return query
  select u.id,
         case when u.id = any(coalesce(v_dead, '{}')) then 'dead'
              when u.id = any(v_held) then 'retry'
              else 'stale' end,
         (select i.available_at from bucketq.inbox i
           where i.group_id = g.group_id and i.msg_id = u.id and i.state + 0 in (2, 3)
             and u.id = any(v_held))
    from unnest(msg_ids) u(id);
end $$;

comment on function bucketq._nack(bucketq.consumer_group, bigint[], bigint[], text[], interval, boolean, text) is
'Internal: the body of bucketq.nack (see there), for its topic dispatch; a copy of it per topic is in schema bucketq_t<topic_id>.';
