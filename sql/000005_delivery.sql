-- bucketq 000005: consuming. claim leases ready messages; ack writes the delivery
-- record and makes each key's next message ready; nack schedules a retry or
-- dead-letters; replay_dead puts dead letters back in order.

-- Make the next message of each given key ready. Runs as its own statement after the
-- caller removed the key's active row, so its snapshot includes every producer that
-- committed while we waited on their lock. One index probe per key: the key's lowest
-- row is promoted if it is waiting. p_check_active (replay, rewind): a waiting row may
-- sit below an active one; then nothing is promoted until that one is done.
create function bucketq._promote(p_group_id int, p_key_ids bigint[], p_now timestamptz, p_check_active boolean default false)
returns void
language sql as $$
  update bucketq.inbox i
     set state = case when i.available_at > p_now then 2 else 0 end
    from (select k.key_id, h.msg_id
            from unnest(p_key_ids) as k(key_id)
            cross join lateral (select x.msg_id, x.state from bucketq.inbox x
                                 where x.group_id = p_group_id and x.key_id = k.key_id
                                 order by x.key_seq limit 1) h
           where h.state = 3) h
   where i.group_id = p_group_id and i.msg_id = h.msg_id and i.state = 3
     and (not p_check_active
          or not exists (select 1 from bucketq.inbox y
                          where y.group_id = p_group_id and y.key_id = h.key_id and y.state <> 3))
$$;

create function bucketq._check_lease_args(fn text, msg_ids bigint[], lease_tokens bigint[]) returns void
language plpgsql immutable as $$
begin
  if msg_ids is null or lease_tokens is null or cardinality(msg_ids) <> cardinality(lease_tokens) then
    raise exception '%: msg_ids and lease_tokens must be arrays of the same length (got % and %)', fn,
      coalesce(cardinality(msg_ids)::text, 'NULL'), coalesce(cardinality(lease_tokens)::text, 'NULL')
      using errcode = 'BQ005', hint = 'Pass the msg_id and lease_token of each claimed message, in the same order, as returned by bucketq.claim.';
  end if;
  if array_position(msg_ids, null) is not null or array_position(lease_tokens, null) is not null then
    raise exception '%: msg_ids and lease_tokens must not contain NULL', fn
      using errcode = 'BQ005', hint = 'Pass the msg_id and lease_token of each claimed message as returned by bucketq.claim.';
  end if;
end $$;

-- A lease whose token still matches but whose claimer no longer owns the bucket at
-- the lease's epoch: that consumer was fenced (its session expired, the bucket moved).
create function bucketq._raise_if_fenced(fn text, g bucketq.consumer_group, msg_ids bigint[], lease_tokens bigint[])
returns void
language plpgsql as $$
declare
  v_fenced bigint[];
  v_consumer text;
begin
  select array_agg(i.msg_id order by i.msg_id), min(i.consumer_id) into v_fenced, v_consumer
    from unnest(msg_ids, lease_tokens) as u(id, tok)
    join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = u.id and i.lease_token = u.tok and i.state = 1
   where not exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket
                        and o.owner = i.consumer_id and o.epoch = i.epoch);
  if v_fenced is not null then
    raise exception '%: consumer % no longer owns the buckets of messages % in group % (fenced: the bucket moved to another consumer or a newer epoch)',
      fn, v_consumer, v_fenced, g.name
      using errcode = 'BQ008',
            detail = 'Nothing was acked or nacked.',
            hint = 'Roll back: the effects of this transaction must not commit; the new owner delivers these messages. Heartbeat more often than the session timeout, then claim again.';
  end if;
end $$;

-- Dead-letter the given inbox rows of a group (they are locked by the caller).
create function bucketq._dead_letter(g bucketq.consumer_group, p_msg_ids bigint[], p_errors text[]) returns void
language plpgsql as $$
declare
  v_now timestamptz := bucketq._now();
  v_keys bigint[];
begin
  insert into bucketq.dead_letter as d (group_id, msg_id, topic_id, sent_at, bucket, key_id, key_seq, attempts, last_error, dead_at)
  select i.group_id, i.msg_id, g.topic_id, i.sent_at, i.bucket, i.key_id, i.key_seq, i.attempts, e.err, v_now
    from unnest(p_msg_ids, p_errors) as e(msg_id, err)
    join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = e.msg_id
  on conflict (group_id, msg_id) do update
     set attempts = excluded.attempts, last_error = excluded.last_error, dead_at = excluded.dead_at, replayed_at = null;

  if g.on_exhausted = 'skip' then
    with gone as (
      delete from bucketq.inbox i
       where i.group_id = g.group_id and i.msg_id = any(p_msg_ids)
      returning i.key_id
    )
    select array_agg(distinct gone.key_id) filter (where gone.key_id is not null) into v_keys from gone;
    if v_keys is not null then
      perform bucketq._promote(g.group_id, v_keys, v_now);
    end if;
  else
    update bucketq.inbox i
       set state = 4, lease_token = null, available_at = null,
           last_error = e.err
      from unnest(p_msg_ids, p_errors) as e(msg_id, err)
     where i.group_id = g.group_id and i.msg_id = e.msg_id;
  end if;
end $$;

create function bucketq.claim(
  group_name text,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  lease_timeout interval default null
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
  v_exhausted bigint[];
  v_timed bigint[];
  v_ready bigint[];
  v_owned int[];
  v_epochs bigint[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('claim', consumer_id);
  if max_messages is null or max_messages < 1 or max_messages > 10000 then
    raise exception 'claim: invalid max_messages % for group %', coalesce(max_messages::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'max_messages is 1 to 10000.';
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

  -- Ready heads, oldest first.
  if coalesce(cardinality(v_timed), 0) < max_messages then
    select array_agg(i.msg_id) into v_ready from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state = 0
         and i.bucket = any(v_owned)
       order by i.msg_id
       limit max_messages - coalesce(cardinality(v_timed), 0)
       for update skip locked) i;
  end if;

  if v_timed is null and v_ready is null then
    return;
  end if;
  v_token := nextval('bucketq.lease_token_seq');

  return query
  with leased as (
    update bucketq.inbox i
       set state = 1, available_at = v_until, attempts = i.attempts + 1,
           lease_token = v_token, consumer_id = claim.consumer_id, epoch = ob.epoch
      from unnest(v_owned, v_epochs) as ob(bucket, epoch)
     where i.group_id = g.group_id and i.msg_id = any(coalesce(v_timed, '{}') || coalesce(v_ready, '{}'))
       and ob.bucket = i.bucket
    returning i.msg_id, i.bucket, i.key_seq, i.attempts, i.sent_at, i.epoch
  )
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts, v_token, l.sent_at, v_until, l.epoch
    from leased l
    -- One index probe per message in its own partition (offset 0 keeps the planner
    -- from turning this into a scan of the whole log with a hash join).
    cross join lateral (select x.key, x.payload, x.headers from bucketq.message x
                         where x.topic_id = g.topic_id and x.sent_at = l.sent_at and x.id = l.msg_id
                         offset 0) m
   order by l.msg_id;
end $$;

comment on function bucketq.claim(text, text, int, int[], interval) is
'Lease up to max_messages ready messages in the buckets this consumer owns (it must have joined; see bucketq.join), under their current epochs (FOR UPDATE SKIP LOCKED: concurrent claimers never get the same message). Only the head of each key is ever ready, so a key''s next message is not handed out before this one is acked or dead-lettered. buckets: restrict to these of its buckets (NULL: all it owns). lease_timeout: NULL for the group''s default; an unacked lease expires and the message is delivered again. Returns the message, its attempt number (1 = first try) and the lease_token that ack and nack need.';

create function bucketq.ack(
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
  v_stale bigint[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_lease_args('ack', msg_ids, lease_tokens);
  v_now := bucketq._now();

  with input as (
    select u.id, u.tok from unnest(msg_ids, lease_tokens) as u(id, tok)
  ),
  locked as materialized (
    -- Lock in (key, id) order, the order producers' commit-time checks use: no deadlock.
    select i.msg_id from bucketq.inbox i
      join input on i.msg_id = input.id and i.lease_token = input.tok
     where i.group_id = g.group_id and i.msg_id = any(msg_ids) and i.state = 1
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
    returning i.msg_id, i.key_id, i.sent_at, i.attempts, i.consumer_id, i.epoch
  ),
  recorded as (
    insert into bucketq.delivery (group_id, topic_id, msg_id, sent_at, attempt, consumer_id, epoch, acked_at)
    select g.group_id, g.topic_id, gone.msg_id, gone.sent_at, gone.attempts,
           coalesce(ack.consumer_id, gone.consumer_id), gone.epoch, v_now
      from gone
  )
  select array_agg(gone.msg_id), array_agg(distinct gone.key_id) filter (where gone.key_id is not null)
    into v_acked, v_keys
    from gone;

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
    perform bucketq._promote(g.group_id, v_keys, v_now);
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

comment on function bucketq.ack(text, bigint[], bigint[], text, boolean) is
'Acknowledge claimed messages (arrays: one msg_id and lease_token each). In the caller''s transaction it checks each lease is still held and that its claimer still owns the bucket at the lease''s epoch (else BQ008: fenced, nothing acked), writes the delivery record and makes the key''s next message ready, so effects written in the same transaction commit if and only if the ack does. strict (default): if any lease is no longer held, raise BQ006 and ack nothing. strict => false: ack what is held; status per message is acked, already_acked or stale.';

create function bucketq.nack(
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
            join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = e.id and i.lease_token = e.tok and i.state = 1
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

  -- Retry: back to delayed, the key stays blocked behind it so order holds.
  update bucketq.inbox i
     set state = 2, lease_token = null, last_error = left(e.err, 10000),
         available_at = v_now + coalesce(retry_delay,
                                         least(g.backoff_max, g.backoff_base * power(2, least(i.attempts - 1, 30))))
    from unnest(msg_ids, errors) as e(id, err)
   where i.group_id = g.group_id and i.msg_id = e.id
     and i.msg_id = any(coalesce(v_held, '{}')) and i.msg_id <> all(coalesce(v_dead, '{}'));

  if v_dead is not null then
    perform bucketq._dead_letter(g, v_dead, v_dead_errors);
  end if;

  return query
  select u.id,
         case when u.id = any(coalesce(v_dead, '{}')) then 'dead'
              when u.id = any(coalesce(v_held, '{}')) then 'retry'
              else 'stale' end,
         (select i.available_at from bucketq.inbox i
           where i.group_id = g.group_id and i.msg_id = u.id and i.state = 2
             and u.id = any(coalesce(v_held, '{}')))
    from unnest(msg_ids) u(id);
end $$;

comment on function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean) is
'Report claimed messages as failed, with an error text each. A message with attempts left is retried after retry_delay (NULL: the group''s backoff, base * 2^(attempt-1) capped at backoff_max) and its key stays blocked meanwhile, so order holds. A message whose attempts are spent is dead-lettered: with on_exhausted = skip its key moves on, with block the key waits for replay_dead. Status per message: retry, dead or stale (strict, the default, raises BQ006 instead of reporting stale).';

create function bucketq.replay_dead(group_name text, msg_ids bigint[] default null) returns int
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_ids bigint[];
  v_keys bigint[];
  v_missing bigint[];
begin
  g := bucketq._group(group_name);
  select array_agg(d.msg_id), array_agg(distinct d.key_id) filter (where d.key_id is not null)
    into v_ids, v_keys
    from bucketq.dead_letter d
   where d.group_id = g.group_id and d.replayed_at is null
     and (msg_ids is null or d.msg_id = any(msg_ids));
  if msg_ids is not null then
    select array_agg(u.id) into v_missing from unnest(msg_ids) u(id) where u.id <> all(coalesce(v_ids, '{}'));
    if v_missing is not null then
      raise exception 'replay_dead: messages % are not dead letters of group % (or were replayed already)', v_missing, g.name
        using errcode = 'BQ005', hint = 'List them with: select msg_id from bucketq.dead_letters where group_name = ...; nothing was replayed.';
    end if;
  end if;
  if v_ids is null then
    return 0;
  end if;

  -- Hold back producers of these keys while we put old messages back in front, and
  -- wait for acks in flight on them: the promotion below then sees the final state.
  perform 1 from bucketq.topic_key k where k.key_id = any(coalesce(v_keys, '{}')) order by k.key_id for update;
  perform 1 from bucketq.inbox i
   where i.group_id = g.group_id and i.key_id = any(coalesce(v_keys, '{}')) and i.state <> 3
   order by i.key_id, i.msg_id
     for update;

  -- block policy: the dead row is still in the inbox, holding its key.
  update bucketq.inbox i
     set state = 3, attempts = 0, lease_token = null, available_at = null
   where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state = 4;
  -- skip policy: the row was removed; put it back.
  insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at, attempts, last_error)
  select d.group_id, d.msg_id, d.bucket, case when d.key_id is null then 0 else 3 end,
         d.key_id, d.key_seq, d.sent_at, null, 0, d.last_error
    from bucketq.dead_letter d
   where d.group_id = g.group_id and d.msg_id = any(v_ids)
  on conflict (group_id, msg_id) do nothing;
  -- Later messages of these keys that are not in flight step back behind the replayed ones.
  update bucketq.inbox i set state = 3
   where i.group_id = g.group_id and i.key_id = any(coalesce(v_keys, '{}'))
     and i.state in (0, 2) and i.msg_id <> all(v_ids);
  -- unkeyed rows from the block policy are ready at once.
  update bucketq.inbox i set state = 0
   where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state = 3 and i.key_id is null;

  update bucketq.dead_letter d set replayed_at = bucketq._now()
   where d.group_id = g.group_id and d.msg_id = any(v_ids);

  if v_keys is not null then
    perform bucketq._promote(g.group_id, v_keys, bucketq._now(), true);
  end if;
  perform pg_notify('bucketq', (select name from bucketq.topic where topic_id = g.topic_id));
  return cardinality(v_ids);
end $$;

comment on function bucketq.replay_dead(text, bigint[]) is
'Put dead letters of a group back (all of them, or the given msg_ids) with their attempts reset. Keyed messages rejoin their key in key_seq order: they are delivered before any later message of the key that is not yet in flight. Returns how many were replayed; unknown ids raise BQ005 and replay nothing.';

insert into bucketq.migration (version, name) values (5, 'delivery');
