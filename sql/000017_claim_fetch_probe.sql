-- bucketq 000017: claims fetch payloads from the log by index, always.
--
-- claim and claim_locked read a batch's payloads with one scan of the log for
-- `id = any(ids)` between the batch's sent_at bounds. A partition that autovacuum has
-- not analyzed yet (a new one, or any in its first minute) has no statistics for id:
-- the planner then takes `id = any(250 ids)` for most of the table and may scan the
-- partition whole (seen: 21 to 29 ms claims on a 150k-row partition instead of about 1).
-- Now each message is one probe by (id, sent_at), which no estimate makes a scan of,
-- and sent_at prunes the probe to the message's own partition. Nothing else changes.

create or replace function bucketq.claim(
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
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts, v_token, l.sent_at, v_until, l.epoch
    from leased l
    -- One index probe of the log per message, in its own partition (see the header).
    cross join lateral (select x.key, x.payload, x.headers from bucketq.message x
                         where x.topic_id = g.topic_id and x.id = l.msg_id and x.sent_at = l.sent_at) m
   -- Oldest first; a run right behind its head, in key_seq order.
   order by min(l.msg_id) over (partition by coalesce(l.key_id, -l.msg_id)), l.key_seq nulls first, l.msg_id;
end $$;

create or replace function bucketq.claim_locked(
  group_name text,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, sent_at timestamptz, epoch bigint, xact xid8)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_now timestamptz;
  v_owned int[];
  v_epochs bigint[];
  v_ids bigint[];
  v_dead int;
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('claim_locked', consumer_id);
  if max_messages is null or max_messages < 1 or max_messages > 10000 then
    raise exception 'claim_locked: invalid max_messages % for group %', coalesce(max_messages::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'max_messages is 1 to 10000.';
  end if;
  if max_per_key is null or max_per_key < 1 or max_per_key > 10000 then
    raise exception 'claim_locked: invalid max_per_key % for group %', coalesce(max_per_key::text, 'NULL'), g.name
      using errcode = 'BQ005',
            hint = 'max_per_key is 1 (only the head of each key) to 10000 (a run of up to that many consecutive messages of a key, to be handled and acked in key_seq order).';
  end if;
  if buckets is not null then
    select * into t from bucketq.topic where topic_id = g.topic_id;
    if exists (select 1 from unnest(buckets) b where b is null or b < 0 or b >= t.buckets) then
      raise exception 'claim_locked: buckets % out of range for topic % (0 to %)', buckets, t.name, t.buckets - 1
        using errcode = 'BQ005', hint = 'Pass bucket numbers between 0 and buckets - 1, or NULL for all buckets.';
    end if;
  end if;

  v_now := bucketq._now();
  select array_agg(o.bucket), array_agg(o.epoch) into v_owned, v_epochs
    from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.owner = claim_locked.consumer_id
     and o.heartbeat_at > v_now - g.session_timeout
     and (buckets is null or o.bucket = any(buckets));
  if v_owned is null then
    if not exists (select 1 from bucketq.consumer c
                    where c.group_id = g.group_id and c.consumer_id = claim_locked.consumer_id
                      and c.heartbeat_at > v_now - g.session_timeout) then
      raise exception 'claim_locked: consumer % is not a live member of group %', claim_locked.consumer_id, g.name
        using errcode = 'BQ008',
              hint = format('Call bucketq.join(%L, %L) first, then bucketq.heartbeat well within the session timeout (%s).',
                            g.name, claim_locked.consumer_id, g.session_timeout);
    end if;
    return;
  end if;

  -- Attempts of transactions that ended without committing count first, so a message
  -- that crashed its worker comes alone (no run) and is dead-lettered when they are spent.
  if exists (select 1 from bucketq.attempt_log a where a.group_id = g.group_id) then
    perform bucketq._settle_attempts(g);
  end if;
  if exists (select 1 from bucketq.inbox i
              where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
                and i.bucket = any(v_owned)) then
    perform bucketq._ready_due(g, v_owned, v_now, max_messages);
  end if;

  -- As in claim: ready keys, oldest head first, each with its run. FOR NO KEY UPDATE:
  -- producers' commit-time checks (FOR KEY SHARE) do not wait for the handlers.
  select array_agg(v.msg_id)
    into v_ids
    from (select c.msg_id,
                 first_value(c.msg_id) over w = c.head_id
                 and coalesce(c.key_seq - first_value(c.key_seq) over w, 0) = row_number() over w - 1 as keep
            from (select coalesce(x.msg_id, h.msg_id) as msg_id, h.msg_id as head_id, x.key_seq
                    from (select h.msg_id, h.key_id, h.key_seq, h.attempts from bucketq.inbox h
                           where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned)
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
  -- A message we just took that an aborted transaction held when the first settling
  -- ran (locked elsewhere then) counts now: we hold it, no one else can.
  if v_ids is not null
     and exists (select 1 from bucketq.attempt_log a
                  where a.group_id = g.group_id and a.msg_ids && v_ids and pg_xact_status(a.xact) = 'aborted') then
    v_dead := bucketq._settle_attempts(g);
    if v_dead > 0 and g.on_exhausted = 'block' then
      -- A head of ours just dead-lettered holds its key: the rest of its run stays.
      select array_agg(u.id) into v_ids from unnest(v_ids) u(id)
       where not exists (select 1 from bucketq.inbox i join bucketq.inbox y on y.group_id = i.group_id and y.key_id = i.key_id
                          where i.group_id = g.group_id and i.msg_id = u.id and y.state = 4);
    end if;
  end if;
  if v_ids is null then
    return;
  end if;

  return query
  with held as materialized (
    select i.msg_id, i.bucket, i.key_id, i.key_seq, i.attempts, i.sent_at, ob.epoch
      from bucketq.inbox i
      join unnest(v_owned, v_epochs) as ob(bucket, epoch) on ob.bucket = i.bucket
     where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state + 0 in (0, 3)
  )
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts + 1, l.sent_at, l.epoch,
         pg_current_xact_id()
    from held l
    -- One index probe of the log per message, in its own partition (see the header).
    cross join lateral (select x.key, x.payload, x.headers from bucketq.message x
                         where x.topic_id = g.topic_id and x.id = l.msg_id and x.sent_at = l.sent_at) m
   order by min(l.msg_id) over (partition by coalesce(l.key_id, -l.msg_id)), l.key_seq nulls first, l.msg_id;
end $$;

alter function bucketq.claim(text, text, int, int[], interval, int)
  security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.claim_locked(text, text, int, int[], int)
  security definer set search_path = pg_catalog, bucketq, pg_temp;

insert into bucketq.migration (version, name) values (17, 'claim_fetch_probe');
