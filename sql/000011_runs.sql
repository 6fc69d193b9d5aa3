-- bucketq 000011: runs. claim may lease a run of consecutive messages of one key (the
-- head and the waiting messages right behind it) under one lease token, so one hot key
-- no longer costs a claim, a commit and an fsync per message.
--
-- What a run changes in the inbox: the non-waiting rows of a key are either one row in
-- state 0, 2 or 4 (as before), or a prefix of the key's rows leased together (state 1,
-- one lease token). The run's head is the key's lowest row; the rest is its tail.
--   - ack: a key's rows are acked in key_seq order. Acking a tail row while an earlier
--     row of its run is still leased is refused (BQ005).
--   - nack: the rest of the run behind a nacked row waits again (its attempt is not
--     counted); the nacked row waits behind any earlier row of its run still leased.
--   - a lost lease (expiry, rebalance, rewind): the head is handed out again, the tail
--     waits behind it again without counting an attempt, and runs are only built from
--     heads on their first attempt, so a message that kills its worker is retried alone
--     and the messages behind it are not dead-lettered with it.

-- Hand leased rows back: a head becomes ready, a tail waits behind its head again. The
-- interrupted attempt counts only for heads listed in p_counted (a tail row may never
-- have reached its handler). Returns the rows with their attempts.
create function bucketq._unlease(p_group_id int, p_msg_ids bigint[], p_counted bigint[] default '{}')
returns table (msg_id bigint, attempts int, head boolean)
language sql as $$
  update bucketq.inbox i
     set state = case when h.head then 0 else 3 end,
         attempts = case when h.head and i.msg_id = any(p_counted) then i.attempts else greatest(i.attempts - 1, 0) end,
         lease_token = null, available_at = null, consumer_id = null, epoch = null
    from (select x.msg_id,
                 x.key_id is null
                 or not exists (select 1 from bucketq.inbox y
                                 where y.group_id = p_group_id and y.key_id = x.key_id and y.key_seq < x.key_seq) as head
            from bucketq.inbox x
           where x.group_id = p_group_id and x.msg_id = any(p_msg_ids) and x.state + 0 = 1) h
   where i.group_id = p_group_id and i.msg_id = h.msg_id
  returning i.msg_id, i.attempts, h.head
$$;

-- After an ack removed the acked rows: make each key's next message ready, and report
-- the keys whose lowest row is a leased row below what was acked (an earlier row of the
-- same run, skipped by the caller). One index probe per key.
create function bucketq._promote_acked(p_group_id int, p_key_ids bigint[], p_max_seqs bigint[], p_now timestamptz)
returns bigint[]
language sql as $$
  with heads as materialized (
    select k.key_id, k.max_seq, h.msg_id, h.state, h.key_seq
      from unnest(p_key_ids, p_max_seqs) as k(key_id, max_seq)
      cross join lateral (select x.msg_id, x.state, x.key_seq from bucketq.inbox x
                           where x.group_id = p_group_id and x.key_id = k.key_id
                           order by x.key_seq limit 1) h
  ),
  promoted as (
    update bucketq.inbox i
       set state = case when i.available_at > p_now then 2 else 0 end
      from heads h
     where i.group_id = p_group_id and i.msg_id = h.msg_id and h.state = 3 and i.state = 3
    returning 1
  )
  select array_agg(h.msg_id order by h.msg_id) from heads h where h.state = 1 and h.key_seq < h.max_seq
$$;

-- Lost leases (rebalance, leave, a dead consumer): as in 000006, plus runs.
create or replace function bucketq._void_old_leases(g bucketq.consumer_group, p_buckets int[], p_count_attempt boolean)
returns void
language plpgsql as $$
declare
  v_victims bigint[];
  v_counted bigint[];
  v_exhausted bigint[];
  v_dead_after timestamptz := bucketq._now() - g.session_timeout;
begin
  if p_buckets is null then
    return;
  end if;
  select array_agg(x.msg_id),
         array_agg(x.msg_id) filter (where p_count_attempt and exists (
           select 1 from bucketq.consumer c
            where c.group_id = g.group_id and c.consumer_id = x.consumer_id and c.heartbeat_at <= v_dead_after))
    into v_victims, v_counted
    from (select x.msg_id, x.consumer_id
            from bucketq.inbox x
            join bucketq.bucket_owner o on o.group_id = x.group_id and o.bucket = x.bucket
           where x.group_id = g.group_id and x.bucket = any(p_buckets) and x.state = 1
             and (o.owner is null or x.epoch is distinct from o.epoch or x.consumer_id is distinct from o.owner)
           order by x.key_id, x.msg_id
             for update of x skip locked) x;
  if v_victims is null then
    return;
  end if;
  select array_agg(u.msg_id) filter (where u.head and u.attempts >= g.max_attempts) into v_exhausted
    from bucketq._unlease(g.group_id, v_victims, coalesce(v_counted, '{}')) u;
  if p_count_attempt and v_exhausted is not null then
    perform bucketq._dead_letter(g, v_exhausted,
      array_fill(format('its consumer was lost (crash, pause or fencing) during attempt %s of %s', g.max_attempts, g.max_attempts),
                 array[cardinality(v_exhausted)]));
  end if;
end $$;

drop function bucketq.claim(text, text, int, int[], interval);

create function bucketq.claim(
  group_name text,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  lease_timeout interval default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, lease_token bigint, sent_at timestamptz, leased_until timestamptz, epoch bigint)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_now timestamptz;
  v_until timestamptz;
  v_token bigint;
  v_tails bigint[];
  v_exhausted bigint[];
  v_timed bigint[];
  v_ready bigint[];
  v_run bigint[];
  v_ids bigint[];
  v_room int;
  v_owned int[];
  v_epochs bigint[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('claim', consumer_id);
  if max_messages is null or max_messages < 1 or max_messages > 10000 then
    raise exception 'claim: invalid max_messages % for group %', coalesce(max_messages::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'max_messages is 1 to 10000.';
  end if;
  if max_per_key is null or max_per_key < 1 or max_per_key > 10000 then
    raise exception 'claim: invalid max_per_key % for group %', coalesce(max_per_key::text, 'NULL'), g.name
      using errcode = 'BQ005',
            hint = 'max_per_key is 1 (only the head of each key) to 10000 (a run of up to that many consecutive messages of a key, to be handled and acked in key_seq order).';
  end if;
  if buckets is not null then  -- the topic is only needed to check the given buckets
    select * into t from bucketq.topic where topic_id = g.topic_id;
    if exists (select 1 from unnest(buckets) b where b is null or b < 0 or b >= t.buckets) then
      raise exception 'claim: buckets % out of range for topic % (0 to %)', buckets, t.name, t.buckets - 1
        using errcode = 'BQ005', hint = 'Pass bucket numbers between 0 and buckets - 1, or NULL for all buckets.';
    end if;
  end if;
  if lease_timeout is not null and (lease_timeout <= interval '0' or lease_timeout > interval '1 day') then
    raise exception 'claim: invalid lease_timeout % for group %', lease_timeout, g.name
      using errcode = 'BQ005', hint = 'lease_timeout is more than 0 and at most 1 day, or NULL for the group''s default.';
  end if;

  v_now := bucketq._now();
  v_until := v_now + coalesce(lease_timeout, g.lease_timeout);

  -- Only buckets this consumer owns, under their current epochs.
  select array_agg(o.bucket), array_agg(o.epoch) into v_owned, v_epochs
    from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.owner = claim.consumer_id
     and o.heartbeat_at > v_now - g.session_timeout
     and (buckets is null or o.bucket = any(buckets));
  if v_owned is null then
    if not exists (select 1 from bucketq.consumer c
                    where c.group_id = g.group_id and c.consumer_id = claim.consumer_id
                      and c.heartbeat_at > v_now - g.session_timeout) then
      raise exception 'claim: consumer % is not a live member of group %', claim.consumer_id, g.name
        using errcode = 'BQ008',
              hint = format('Call bucketq.join(%L, %L) first, then bucketq.heartbeat well within the session timeout (%s).',
                            g.name, claim.consumer_id, g.session_timeout);
    end if;
    return;  -- a member that owns no bucket (yet): nothing to claim
  end if;

  -- Is anything due in these buckets (expired leases, retries, not_before reached)?
  -- Usually not: one index probe, and the three statements below are skipped.
  if exists (select 1 from bucketq.inbox i
              where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
                and i.bucket = any(v_owned)) then
    -- The tails of expired runs wait behind their heads again (their attempt does not
    -- count); the heads are handled below like any expired lease.
    select array_agg(i.msg_id) into v_tails from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state = 1 and i.available_at <= v_now
         and i.bucket = any(v_owned) and i.key_id is not null
         and exists (select 1 from bucketq.inbox y
                      where y.group_id = g.group_id and y.key_id = i.key_id and y.key_seq < i.key_seq)
       order by i.key_id, i.msg_id
       for update of i skip locked) i;
    if v_tails is not null then
      perform bucketq._unlease(g.group_id, v_tails);
    end if;

    -- Expired leases whose attempts are spent go to the dead letters (a worker that
    -- crashes on a message every time must not hold its key forever).
    select array_agg(i.msg_id) into v_exhausted from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state = 1 and i.available_at <= v_now
         and i.attempts >= g.max_attempts and i.bucket = any(v_owned)
       for update skip locked) i;
    if v_exhausted is not null then
      perform bucketq._dead_letter(g, v_exhausted,
        array_fill(format('lease expired after %s attempts', g.max_attempts), array[cardinality(v_exhausted)]));
    end if;

    -- Rows whose time has come: retries after backoff, not_before reached, expired leases.
    select array_agg(i.msg_id) into v_timed from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
         and i.bucket = any(v_owned)
       order by i.available_at
       limit max_messages
       for update skip locked) i;
  end if;

  -- Ready keys, oldest head first, each with its run: the head, then the waiting
  -- messages right behind it (for a keyed head on its first attempt), until the batch
  -- is full. Taking whole runs makes fewer keys per batch, so fewer promotions on ack.
  -- Rows are locked as they are read (SKIP LOCKED: concurrent claimers take other
  -- keys) and the LIMIT stops the reading once the batch is full; a message locked
  -- elsewhere or not yet due ends its run there.
  v_room := max_messages - coalesce(cardinality(v_timed), 0);
  if v_room > 0 then
    select array_agg(v.msg_id order by v.head_id, v.key_seq) filter (where v.msg_id = v.head_id),
           array_agg(v.msg_id order by v.head_id, v.key_seq) filter (where v.msg_id <> v.head_id)
      into v_ready, v_run
      from (select c.msg_id, c.head_id, c.key_seq,
                   first_value(c.msg_id) over w = c.head_id
                   and coalesce(c.key_seq - first_value(c.key_seq) over w, 0) = row_number() over w - 1 as keep
              from (select coalesce(x.msg_id, h.msg_id) as msg_id, h.msg_id as head_id, x.key_seq
                      from (select h.msg_id, h.key_id, h.key_seq, h.attempts from bucketq.inbox h
                             where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned)
                             order by h.msg_id
                             limit v_room
                               for update skip locked) h
                      -- the key's rows from its head on (we hold the head's lock already)
                      left join lateral (
                        select x.msg_id, x.key_seq from bucketq.inbox x
                         where x.group_id = g.group_id and x.key_id = h.key_id
                           and x.key_seq >= h.key_seq
                           and x.key_seq < h.key_seq + case when h.attempts = 0 then max_per_key else 1 end
                           and (x.msg_id = h.msg_id
                                or (x.state = 3 and (x.available_at is null or x.available_at <= v_now)))
                         order by x.key_seq
                           for update skip locked) x on true
                     limit v_room) c
            window w as (partition by c.head_id order by c.key_seq)) v
     where v.keep;
  end if;

  if v_timed is null and v_ready is null then
    return;
  end if;
  v_token := nextval('bucketq.lease_token_seq');
  v_ids := coalesce(v_timed, '{}') || coalesce(v_ready, '{}') || coalesce(v_run, '{}');

  return query
  with leased as (
    update bucketq.inbox i
       set state = 1, available_at = v_until, attempts = i.attempts + 1,
           lease_token = v_token, consumer_id = claim.consumer_id, epoch = ob.epoch
      from unnest(v_owned, v_epochs) as ob(bucket, epoch)
     where i.group_id = g.group_id
       and i.msg_id = any(v_ids)
       and ob.bucket = i.bucket
    returning i.msg_id, i.bucket, i.key_id, i.key_seq, i.attempts, i.sent_at, i.epoch
  )
  , m as materialized (
    -- One bitmap scan of the log for the whole batch, in the partitions its sent_at
    -- range touches (run-time pruning on the init-plan bounds).
    select x.id, x.sent_at, x.key, x.payload, x.headers from bucketq.message x
     where x.topic_id = g.topic_id
       and x.id = any(v_ids)
       and x.sent_at >= (select min(l.sent_at) from leased l)
       and x.sent_at <= (select max(l.sent_at) from leased l)
  )
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts, v_token, l.sent_at, v_until, l.epoch
    from leased l
    join m on m.id = l.msg_id and m.sent_at = l.sent_at
   -- Oldest first; a run right behind its head, in key_seq order.
   order by min(l.msg_id) over (partition by coalesce(l.key_id, -l.msg_id)), l.key_seq nulls first, l.msg_id;
end $$;

comment on function bucketq.claim(text, text, int, int[], interval, int) is
'Lease up to max_messages ready messages in the buckets this consumer owns (it must have joined; see bucketq.join), under their current epochs (FOR UPDATE SKIP LOCKED: concurrent claimers never get the same message). A key''s next message is not handed out before the one before it is acked or dead-lettered. max_per_key (default 1): with more, a key on its first attempt may come as a run of up to that many consecutive messages under one lease; they are returned together in key_seq order, and the consumer must handle them in that order and ack them in order (an ack that skips an earlier message of the run is refused), and nack the first that fails: the rest of the run then waits again. buckets: restrict to these of its buckets (NULL: all it owns). lease_timeout: NULL for the group''s default; an unacked lease expires and the message is delivered again. Returns the message, its attempt number (1 = first try) and the lease_token that ack and nack need.';

create or replace function bucketq.ack(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  consumer_id text default null,
  strict boolean default true
) returns table (msg_id bigint, status text)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_acked bigint[];
  v_keys bigint[];
  v_max_seqs bigint[];
  v_stale bigint[];
  v_skipped bigint[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_lease_args('ack', msg_ids, lease_tokens);
  v_now := bucketq._now();

  with locked as materialized (
    -- Lock in (key, id) order, the order producers' commit-time checks use: no deadlock.
    -- One bitmap scan of the primary key for the whole array. state + 0: the planner
    -- must not use the partial index inbox_timed, which it believes tiny and would scan
    -- once per array element. (A msg_id given twice counts with its first token.)
    select i.msg_id from bucketq.inbox i
     where i.group_id = g.group_id and i.msg_id = any(msg_ids)
       and i.lease_token = lease_tokens[array_position(msg_ids, i.msg_id)] and i.state + 0 = 1
     order by i.key_id, i.msg_id
       for update of i
  ),
  gone as (
    -- The epoch check is part of the DELETE: the claimer must still own the bucket at
    -- the lease's epoch. The deleted row stays locked until we commit.
    delete from bucketq.inbox i
     using locked
     where i.group_id = g.group_id and i.msg_id = any(msg_ids) and i.msg_id = locked.msg_id
       and exists (select 1 from bucketq.bucket_owner o
                    where o.group_id = g.group_id and o.bucket = i.bucket
                      and o.owner = i.consumer_id and o.epoch = i.epoch)
    returning i.msg_id, i.key_id, i.key_seq, i.sent_at, i.attempts, i.consumer_id, i.epoch
  ),
  recorded as (
    insert into bucketq.delivery (group_id, topic_id, msg_id, sent_at, attempt, consumer_id, epoch, acked_at)
    select g.group_id, g.topic_id, gone.msg_id, gone.sent_at, gone.attempts,
           coalesce(ack.consumer_id, gone.consumer_id), gone.epoch, v_now
      from gone
  ),
  per_key as (
    select gone.key_id, max(gone.key_seq) as max_seq from gone where gone.key_id is not null group by gone.key_id
  )
  select (select array_agg(gone.msg_id) from gone),
         (select array_agg(p.key_id order by p.key_id) from per_key p),
         (select array_agg(p.max_seq order by p.key_id) from per_key p)
    into v_acked, v_keys, v_max_seqs;

  if coalesce(cardinality(v_acked), 0) < cardinality(msg_ids) then
    select array_agg(u.id order by u.id) into v_stale
      from unnest(msg_ids) u(id)
     where u.id <> all(coalesce(v_acked, '{}'));
    perform bucketq._raise_if_fenced('ack', g, msg_ids, lease_tokens);
    if strict then
      raise exception 'ack: % of % messages are not leased with these tokens in group % (msg_ids %)',
        cardinality(v_stale), cardinality(msg_ids), g.name, v_stale
        using errcode = 'BQ006',
              detail = 'Their lease expired and they were claimed again, or they were already acked, nacked or dead-lettered. Nothing was acked.',
              hint = 'Roll back: the effects of this transaction must not commit. The messages will be (or were) delivered again. Pass strict => false to ack the rest and get a status per message.';
    end if;
  end if;

  if v_keys is not null then
    v_skipped := bucketq._promote_acked(g.group_id, v_keys, v_max_seqs, v_now);
    if v_skipped is not null then
      raise exception 'ack: out of order in group %: messages % are still leased, ahead of later messages of their keys acked here',
        g.name, v_skipped
        using errcode = 'BQ005',
              detail = 'A run''s messages are acked in key_seq order. Nothing was acked.',
              hint = 'Ack the earlier messages first or in the same call; if one of them failed, nack it (the rest of its run then waits again) and do not ack the later ones.';
    end if;
  end if;

  if v_stale is null then
    return query select u.id, 'acked'::text from unnest(msg_ids) u(id);
    return;
  end if;
  return query
  select u.id,
         case when u.id = any(coalesce(v_acked, '{}')) then 'acked'
              when exists (select 1 from bucketq.delivery d
                            where d.group_id = g.group_id and d.topic_id = g.topic_id and d.msg_id = u.id) then 'already_acked'
              else 'stale' end
    from unnest(msg_ids) u(id);
end $$;

create or replace function bucketq.nack(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  errors text[] default null,
  retry_delay interval default null,
  strict boolean default true
) returns table (msg_id bigint, status text, retry_at timestamptz)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_held bigint[];
  v_dead bigint[];
  v_dead_errors text[];
  v_stale bigint[];
  v_tails bigint[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_lease_args('nack', msg_ids, lease_tokens);
  if errors is not null and cardinality(errors) <> cardinality(msg_ids) then
    raise exception 'nack: errors has % elements for % messages (group %)', cardinality(errors), cardinality(msg_ids), g.name
      using errcode = 'BQ005', hint = 'Pass one error text per message (NULL elements allowed), or NULL.';
  end if;
  if retry_delay is not null and retry_delay < interval '0' then
    raise exception 'nack: retry_delay must not be negative (got %, group %)', retry_delay, g.name
      using errcode = 'BQ005', hint = 'Pass NULL for the group''s exponential backoff, or a delay >= 0.';
  end if;
  v_now := bucketq._now();

  select array_agg(x.msg_id),
         array_agg(x.msg_id) filter (where x.attempts >= g.max_attempts),
         array_agg(left(x.err, 10000)) filter (where x.attempts >= g.max_attempts)
    into v_held, v_dead, v_dead_errors
    from (select i.msg_id, i.attempts, e.err
            from unnest(msg_ids, lease_tokens, errors) as e(id, tok, err)
            join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = e.id and i.lease_token = e.tok and i.state + 0 = 1
           where exists (select 1 from bucketq.bucket_owner o
                          where o.group_id = g.group_id and o.bucket = i.bucket
                            and o.owner = i.consumer_id and o.epoch = i.epoch)
           order by i.key_id, i.msg_id
           for update of i) x;

  if coalesce(cardinality(v_held), 0) < cardinality(msg_ids) then
    select array_agg(u.id order by u.id) into v_stale
      from unnest(msg_ids) u(id) where u.id <> all(coalesce(v_held, '{}'));
    perform bucketq._raise_if_fenced('nack', g, msg_ids, lease_tokens);
    if strict then
      raise exception 'nack: % of % messages are not leased with these tokens in group % (msg_ids %)',
        cardinality(v_stale), cardinality(msg_ids), g.name, v_stale
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
  select array_agg(x.msg_id) into v_tails from (
    select x.msg_id
      from bucketq.inbox n
      join bucketq.inbox x on x.group_id = n.group_id and x.key_id = n.key_id
                          and x.lease_token = n.lease_token and x.key_seq > n.key_seq and x.state = 1
     where n.group_id = g.group_id and n.msg_id = any(v_held) and n.key_id is not null
       and x.msg_id <> all(v_held)
     order by x.key_id, x.msg_id
       for update of x) x;
  if v_tails is not null then
    perform bucketq._unlease(g.group_id, v_tails);
  end if;

  -- Retry: delayed, and the key stays blocked behind it so order holds. A row with an
  -- earlier row of its run still leased waits behind that one (its retry time is kept:
  -- _promote makes it delayed, not ready, when its turn comes).
  update bucketq.inbox i
     set state = case when i.key_id is not null
                       and exists (select 1 from bucketq.inbox y
                                    where y.group_id = i.group_id and y.key_id = i.key_id and y.key_seq < i.key_seq)
                      then 3 else 2 end,
         lease_token = null, last_error = left(e.err, 10000),
         available_at = v_now + coalesce(retry_delay,
                                         least(g.backoff_max, g.backoff_base * power(2, least(i.attempts - 1, 30))))
    from unnest(msg_ids, errors) as e(id, err)
   where i.group_id = g.group_id and i.msg_id = e.id
     and i.msg_id = any(v_held) and i.msg_id <> all(coalesce(v_dead, '{}'));

  if v_dead is not null then
    perform bucketq._dead_letter(g, v_dead, v_dead_errors);
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

-- rewind voids every lease of the group: with runs, a tail waits behind its head.
create or replace function bucketq.rewind(group_name text, to_time timestamptz) returns int
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_oldest timestamptz;
  v_count int;
  v_keys bigint[];
  v_leased bigint[];
begin
  g := bucketq._group(group_name);
  select * into t from bucketq.topic where topic_id = g.topic_id;
  if to_time is null then
    raise exception 'rewind: to_time must not be NULL (group %)', g.name
      using errcode = 'BQ005', hint = 'Pass the time to replay from, e.g. now() - interval ''1 hour''.';
  end if;
  select min(p.lower_bound) into v_oldest from bucketq.log_partition p where p.topic_id = t.topic_id;
  if to_time < v_oldest then
    raise exception 'rewind: % is before the oldest retained message time % of topic %', to_time, v_oldest, t.name
      using errcode = 'BQ005', hint = format('Messages older than the retention (%s) are gone; rewind to %s or later.', t.retention, v_oldest);
  end if;

  -- Hold producers back (as create_group does), void every lease of the group (epochs
  -- bump, so an ack under an old lease fails), and wait for acks already under way.
  perform pg_advisory_xact_lock(bucketq._lock_ns(), t.topic_id);
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  update bucketq.bucket_owner o set epoch = o.epoch + 1, moved_at = bucketq._now() where o.group_id = g.group_id;
  perform 1 from bucketq.inbox i where i.group_id = g.group_id order by i.key_id, i.msg_id for update;

  -- Forget the group's progress from to_time on, then put those messages back in key order.
  delete from bucketq.delivery d where d.group_id = g.group_id and d.topic_id = t.topic_id and d.sent_at >= to_time;
  update bucketq.dead_letter d set replayed_at = bucketq._now()
   where d.group_id = g.group_id and d.sent_at >= to_time and d.replayed_at is null;
  delete from bucketq.inbox i where i.group_id = g.group_id and i.sent_at >= to_time;
  insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at)
  select g.group_id, m.id, m.bucket,
         case when m.key_id is not null then 3 when m.not_before > bucketq._now() then 2 else 0 end,
         m.key_id, m.key_seq, m.sent_at, m.not_before
    from bucketq.message m
   where m.topic_id = t.topic_id and m.sent_at >= to_time;
  get diagnostics v_count = row_count;

  -- Leases of older messages still in flight are void too: hand them out again.
  select array_agg(i.msg_id) into v_leased from bucketq.inbox i where i.group_id = g.group_id and i.state = 1;
  if v_leased is not null then
    perform bucketq._unlease(g.group_id, v_leased);
  end if;
  select array_agg(distinct i.key_id) into v_keys from bucketq.inbox i
   where i.group_id = g.group_id and i.sent_at >= to_time and i.key_id is not null;
  if v_keys is not null then
    perform bucketq._promote(g.group_id, v_keys, bucketq._now(), true);
  end if;
  perform pg_notify('bucketq', t.name);
  return v_count;
end $$;

comment on function bucketq.ack(text, bigint[], bigint[], text, boolean) is
'Acknowledge claimed messages (arrays: one msg_id and lease_token each). In the caller''s transaction it checks each lease is still held and that its claimer still owns the bucket at the lease''s epoch (else BQ008: fenced, nothing acked), writes the delivery record and makes the key''s next message ready, so effects written in the same transaction commit if and only if the ack does. The messages of a run (see claim''s max_per_key) are acked in key_seq order: acking one while an earlier one of its run is still leased raises BQ005 and acks nothing. strict (default): if any lease is no longer held, raise BQ006 and ack nothing. strict => false: ack what is held; status per message is acked, already_acked or stale.';

comment on function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean) is
'Report claimed messages as failed, with an error text each. A message with attempts left is retried after retry_delay (NULL: the group''s backoff, base * 2^(attempt-1) capped at backoff_max) and its key stays blocked meanwhile, so order holds. The rest of its run (see claim''s max_per_key) waits behind it again without counting an attempt. A message whose attempts are spent is dead-lettered: with on_exhausted = skip its key moves on, with block the key waits for replay_dead. Status per message: retry, dead or stale (strict, the default, raises BQ006 instead of reporting stale).';

-- CREATE OR REPLACE resets these: the public functions run as their owner again.
alter function bucketq.claim(text, text, int, int[], interval, int) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.ack(text, bigint[], bigint[], text, boolean) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.rewind(text, timestamptz) security definer set search_path = pg_catalog, bucketq, pg_temp;

select bucketq._grant_roles();

insert into bucketq.migration (version, name) values (11, 'runs');
