-- bucketq 000006: the lobby. Consumers join a group, heartbeat, and own a fair share
-- of its buckets; ownership moves incrementally and stickily, fenced by epochs.

create function bucketq._check_consumer_id(fn text, consumer_id text) returns void
language plpgsql immutable as $$
begin
  if consumer_id is null or consumer_id = '' or length(consumer_id) > 200 then
    raise exception '%: invalid consumer_id %', fn, coalesce(quote_literal(consumer_id), 'NULL')
      using errcode = 'BQ005', hint = 'consumer_id names one worker instance (1 to 200 characters), e.g. hostname:pid:random; use a new one per process start.';
  end if;
end $$;

-- Leases granted under an older epoch of a bucket are void: hand those messages out
-- again now instead of waiting for the lease to expire. Rows an old owner is acking
-- right now are locked; skip them: its ack either commits (done) or fails, and then
-- the lease expires as usual. When the lease holder died (its session expired, so
-- p_count_attempt and its heartbeat is stale) the attempt counts: a message whose
-- attempts are spent is dead-lettered, so a message that kills every worker cannot
-- hold its key forever. A lease lost to a rebalance or a leave does not count.
create function bucketq._void_old_leases(g bucketq.consumer_group, p_buckets int[], p_count_attempt boolean)
returns void
language plpgsql as $$
declare
  v_exhausted bigint[];
  v_dead_after timestamptz := bucketq._now() - g.session_timeout;
begin
  if p_buckets is null then
    return;
  end if;
  with voided as (
    update bucketq.inbox i
       set state = 0, lease_token = null, available_at = null, consumer_id = null, epoch = null,
           attempts = case
             when p_count_attempt and exists (select 1 from bucketq.consumer c
                                               where c.group_id = g.group_id and c.consumer_id = i.consumer_id
                                                 and c.heartbeat_at <= v_dead_after)
               then i.attempts
             else greatest(i.attempts - 1, 0) end
     where (i.group_id, i.msg_id) in (
             select x.group_id, x.msg_id
               from bucketq.inbox x
               join bucketq.bucket_owner o on o.group_id = x.group_id and o.bucket = x.bucket
              where x.group_id = g.group_id and x.bucket = any(p_buckets) and x.state = 1
                and (o.owner is null or x.epoch is distinct from o.epoch or x.consumer_id is distinct from o.owner)
              order by x.key_id, x.msg_id
                for update of x skip locked)
    returning i.msg_id, i.attempts
  )
  select array_agg(v.msg_id) filter (where v.attempts >= g.max_attempts) into v_exhausted from voided v;
  if p_count_attempt and v_exhausted is not null then
    perform bucketq._dead_letter(g, v_exhausted,
      array_fill(format('its consumer was lost (crash, pause or fencing) during attempt %s of %s', g.max_attempts, g.max_attempts),
                 array[cardinality(v_exhausted)]));
  end if;
end $$;

-- Give buckets up: owner cleared, epoch bumped (any lease under the old epoch can no
-- longer be acked), leases handed back without counting the interrupted attempt.
create function bucketq._release(g bucketq.consumer_group, p_buckets int[]) returns void
language plpgsql as $$
begin
  if p_buckets is null or cardinality(p_buckets) = 0 then
    return;
  end if;
  update bucketq.bucket_owner o
     set owner = null, epoch = o.epoch + 1, heartbeat_at = null, moved_at = bucketq._now()
   where o.group_id = g.group_id and o.bucket = any(p_buckets);
  perform bucketq._void_old_leases(g, p_buckets, false);
end $$;

create function bucketq.heartbeat(group_name text, consumer_id text)
returns table (bucket int, epoch bigint)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_buckets int;
  v_now timestamptz;
  v_live_after timestamptz;
  v_live int;
  v_rank int;
  v_target int;
  v_mine int;
  v_release int[];
  v_take int[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('heartbeat', consumer_id);
  select t.buckets into v_buckets from bucketq.topic t where t.topic_id = g.topic_id;
  v_now := bucketq._now();
  v_live_after := v_now - g.session_timeout;

  update bucketq.consumer c set heartbeat_at = v_now
   where c.group_id = g.group_id and c.consumer_id = heartbeat.consumer_id;
  if not found then
    raise exception 'consumer % is not a member of group %', heartbeat.consumer_id, g.name
      using errcode = 'BQ008', hint = 'Call bucketq.join(group_name, consumer_id) first; after leave (or when an operator removed it) join again.';
  end if;

  -- Renew what is still ours. A bucket taken over while we were late is not.
  update bucketq.bucket_owner o set heartbeat_at = v_now
   where o.group_id = g.group_id and o.owner = heartbeat.consumer_id;
  get diagnostics v_mine = row_count;

  -- Fair share: buckets / live consumers; the remainder goes to the consumers that
  -- hold the most already (then by id), so as few buckets as possible move.
  select r.rnk, r.n into v_rank, v_live from (
    select l.consumer_id,
           row_number() over (order by l.cnt desc, l.consumer_id) - 1 as rnk,
           count(*) over () as n
      from (select c.consumer_id,
                   (select count(*) from bucketq.bucket_owner o
                     where o.group_id = g.group_id and o.owner = c.consumer_id and o.heartbeat_at > v_live_after) as cnt
              from bucketq.consumer c
             where c.group_id = g.group_id and c.heartbeat_at > v_live_after) l
  ) r where r.consumer_id = heartbeat.consumer_id;
  v_target := v_buckets / v_live + case when v_rank < v_buckets % v_live then 1 else 0 end;

  if v_mine > v_target then
    select array_agg(x.bucket) into v_release from (
      select o.bucket from bucketq.bucket_owner o
       where o.group_id = g.group_id and o.owner = heartbeat.consumer_id
       order by o.bucket desc
       limit v_mine - v_target
       for update) x;
    perform bucketq._release(g, v_release);
  elsif v_mine < v_target then
    -- One UPDATE per bucket taken: free buckets first, then expired ones. SKIP LOCKED:
    -- two consumers never wait for each other; only one can win a bucket.
    with candidate as (
      select o.bucket from bucketq.bucket_owner o
       where o.group_id = g.group_id
         and (o.owner is null or o.heartbeat_at is null or o.heartbeat_at <= v_live_after)
       order by (o.owner is not null), o.bucket
       limit v_target - v_mine
       for update skip locked
    ),
    taken as (
      update bucketq.bucket_owner o
         set owner = heartbeat.consumer_id, epoch = o.epoch + 1, heartbeat_at = v_now, moved_at = v_now
        from candidate c
       where o.group_id = g.group_id and o.bucket = c.bucket
      returning o.bucket
    )
    select array_agg(taken.bucket) into v_take from taken;
  end if;

  -- Leases from an older epoch in our buckets (a crashed or fenced owner's) are void.
  perform bucketq._void_old_leases(
    g,
    (select array_agg(o.bucket) from bucketq.bucket_owner o
      where o.group_id = g.group_id and o.owner = heartbeat.consumer_id),
    true);

  -- Forget consumers gone for long that own nothing.
  delete from bucketq.consumer c
   where c.group_id = g.group_id
     and c.heartbeat_at < v_now - greatest(g.session_timeout * 10, interval '1 minute')
     and not exists (select 1 from bucketq.bucket_owner o where o.group_id = g.group_id and o.owner = c.consumer_id);

  return query
  select o.bucket, o.epoch from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.owner = heartbeat.consumer_id
   order by o.bucket;
end $$;

comment on function bucketq.heartbeat(text, text) is
'Keep a consumer alive and rebalance: renews its buckets, takes free or expired buckets up to its fair share (buckets / live consumers; each take is one UPDATE that bumps the epoch) and releases its surplus when others joined. Only buckets that must move, move. Returns the buckets it owns now with their epochs. Raises BQ008 if the consumer has not joined. Call it well within the group''s session_timeout.';

create function bucketq.join(group_name text, consumer_id text, meta jsonb default null)
returns table (bucket int, epoch bigint)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_consumer text := $2;  -- "join" is a keyword, so parameters cannot be qualified with it
  v_meta jsonb := $3;
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('join', v_consumer);
  v_now := bucketq._now();
  insert into bucketq.consumer as c (group_id, consumer_id, joined_at, heartbeat_at, meta)
  values (g.group_id, v_consumer, v_now, v_now, v_meta)
  on conflict (group_id, consumer_id) do update
     set joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at, meta = coalesce(excluded.meta, c.meta);
  -- A join starts a new session: whatever this id held before is released (its
  -- leases belong to a previous incarnation that is gone).
  perform bucketq._release(g,
    (select array_agg(o.bucket) from bucketq.bucket_owner o
      where o.group_id = g.group_id and o.owner = v_consumer));
  return query select * from bucketq.heartbeat(group_name, v_consumer);
end $$;

comment on function bucketq.join(text, text, jsonb) is
'Register a consumer in a group''s lobby (meta: free-form JSON such as host and pid) and take its fair share of buckets. Returns the buckets it owns with their epochs. Use a fresh consumer_id per process start; joining again with the same id starts a new session.';

create function bucketq.leave(group_name text, consumer_id text) returns int
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_buckets int[];
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('leave', consumer_id);
  select array_agg(o.bucket) into v_buckets from (
    select o.bucket from bucketq.bucket_owner o
     where o.group_id = g.group_id and o.owner = leave.consumer_id
     for update) o;
  perform bucketq._release(g, v_buckets);
  delete from bucketq.consumer c where c.group_id = g.group_id and c.consumer_id = leave.consumer_id;
  return coalesce(cardinality(v_buckets), 0);
end $$;

comment on function bucketq.leave(text, text) is
'Leave a group: release every bucket the consumer owns (epochs bumped, its unacked leases handed back at once) and remove it from the lobby. Returns how many buckets were released. Finish or nack in-flight messages first: their acks fail after leave.';

insert into bucketq.migration (version, name) values (6, 'lobby');
