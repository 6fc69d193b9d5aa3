create or replace function bucketq.heartbeat(group_name text, consumer_id text)
returns table (bucket int, epoch bigint)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
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
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('heartbeat', g);
  end if;
  perform bucketq._check_consumer('heartbeat', g, consumer_id);
  select t.buckets into v_buckets from bucketq.topic t where t.topic_id = g.topic_id;
  v_now := bucketq._now();
  v_live_after := v_now - g.session_timeout;

  -- The beat is a row appended to this period's part of bucketq.consumer_beat, not an
  -- update of the consumer's row (migration 39: under a pinned horizon each update left
  -- a version that every claim's and settle's lookup of the row stepped over). The row
  -- is locked as that update locked it (FOR NO KEY UPDATE sets its xmax in place, no new
  -- version): a leave or join of this id in flight finishes first, and one that comes
  -- waits for us.
  perform 1 from bucketq.consumer c
   where c.group_id = g.group_id and c.consumer_id = heartbeat.consumer_id
     for no key update;
  if not found then
    raise exception 'consumer % is not a member of group %', heartbeat.consumer_id, g.name
      using errcode = 'BQ008', hint = 'Call bucketq.join(group_name, consumer_id) first; after leave (or when an operator removed it) join again.';
  end if;
  if bucketq._beat_part(v_now) = 0 then
    insert into bucketq.consumer_beat_0 (part, group_id, consumer_id, beat_at) values (0, g.group_id, heartbeat.consumer_id, v_now);
  else
    insert into bucketq.consumer_beat_1 (part, group_id, consumer_id, beat_at) values (1, g.group_id, heartbeat.consumer_id, v_now);
  end if;

  -- That renews our buckets too: an ownership is live while its owner's heartbeat is
  -- (one beat per heartbeat, not an update per bucket: under a pinned xmin horizon each
  -- update leaves a dead version that every claim's read of the owners stepped over). A
  -- bucket taken over while we were late is not ours any more.
  select count(*) into v_mine from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.owner = heartbeat.consumer_id;

  -- Fair share: buckets / live consumers; the remainder goes to the consumers that
  -- hold the most already (then by id), so as few buckets as possible move.
  select r.rnk, r.n into v_rank, v_live from (
    select l.consumer_id,
           row_number() over (order by l.cnt desc, l.consumer_id) - 1 as rnk,
           count(*) over () as n
      from (select c.consumer_id,
                   (select count(*) from bucketq.bucket_owner o
                     where o.group_id = g.group_id and o.owner = c.consumer_id) as cnt
              from bucketq._consumer_now c
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
    -- One UPDATE per bucket taken: free buckets first, then those of consumers whose
    -- heartbeat expired (not a paused group's: owner ''). SKIP LOCKED: two consumers
    -- never wait for each other; only one can win a bucket.
    with candidate as (
      select o.bucket from bucketq.bucket_owner o
       where o.group_id = g.group_id
         and (o.owner is null
              or (o.owner <> ''
                  and not exists (select 1 from bucketq._consumer_now c
                                   where c.group_id = o.group_id and c.consumer_id = o.owner
                                     and c.heartbeat_at > v_live_after)))
       order by (o.owner is not null), o.bucket
       limit v_target - v_mine
       for update skip locked
    ),
    taken as (
      update bucketq.bucket_owner o
         set owner = heartbeat.consumer_id, epoch = o.epoch + 1, moved_at = v_now
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

  -- Forget consumers gone for long that own nothing. SKIP LOCKED: a row someone holds
  -- (that consumer's own heartbeat, which then waits for the buckets we hold) is left
  -- for a later heartbeat instead of waited for.
  delete from bucketq.consumer c
   where (c.group_id, c.consumer_id) in (
           select x.group_id, x.consumer_id from bucketq.consumer x
            where x.group_id = g.group_id
              and (select n.heartbeat_at from bucketq._consumer_now n
                    where n.group_id = x.group_id and n.consumer_id = x.consumer_id)
                  < v_now - greatest(g.session_timeout * 10, interval '1 minute')
              and not exists (select 1 from bucketq.bucket_owner o where o.group_id = g.group_id and o.owner = x.consumer_id)
              for update skip locked);

  return query
  select o.bucket, o.epoch from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.owner = heartbeat.consumer_id
   order by o.bucket;
end $$;

comment on function bucketq.heartbeat(text, text) is
'Keep a consumer alive and rebalance: renews its session (and so its buckets: an ownership is live while its owner''s heartbeat is), takes free or expired buckets up to its fair share (buckets / live consumers; each take is one UPDATE that bumps the epoch) and releases its surplus when others joined. Only buckets that must move, move. Returns the buckets it owns now with their epochs. Raises BQ008 if the consumer has not joined. Call it well within the group''s session_timeout. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could miss batches acked while it waited to release their buckets, and hand their messages out again).';
