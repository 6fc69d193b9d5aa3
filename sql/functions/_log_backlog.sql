-- What a group has left in one bucket's log past its checkpoint: messages not yet
-- handed out and free to go (ready), behind an inbox message of their key (waiting),
-- handed out in the batch under way (in_flight), and the send time of the oldest of
-- them. For the views (hence the owner's rights); it counts, so it reads the backlog,
-- once: the batch's ids and the keys held in the inbox are joined as sets, and a key's
-- first message here is found by grouping (a search of the batch's ids, an inbox probe
-- and a window sort per message made the lag of a 100,000-message backlog take 300 ms;
-- now 69). Nothing for a group the caller may not see (_may_see_group).
create or replace function bucketq._log_backlog(p_group_id int, p_topic_id int, p_bucket int, p_start timestamptz)
returns table (ready bigint, in_flight bigint, waiting bigint, oldest timestamptz)
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
  with c as (
    select p.* from bucketq.progress p
     where p.group_id = p_group_id and p.bucket = p_bucket and p.kind in (1, 2)
       and bucketq._may_see_group(p_group_id)   -- callable directly: only groups the caller may see
     order by p.seq desc limit 1
  ),
  pending as materialized (
    select m.id, m.sent_at, m.key_id, m.key_seq
      from c
      cross join lateral bucketq._log_ahead(p_topic_id, c) m
     where p_start is null or m.sent_at >= p_start
  ),
  -- handed out in a batch still running (an ended one is handed back by the next claim)
  flight as (
    select u.id from c cross join lateral unnest(c.msg_ids) as u(id)
     where c.kind = 2
       and case when c.lease_token is not null then c.leased_until > bucketq._now()
                else pg_xact_status(c.xact) = 'in progress' end
  ),
  -- per key: its first message here, and whether an inbox message of the key holds it
  keys as (
    select k.key_id, k.first_seq,
           exists (select 1 from bucketq.inbox x where x.group_id = p_group_id and x.key_id = k.key_id) as held
      from (select p.key_id, min(p.key_seq) as first_seq from pending p where p.key_id is not null group by p.key_id) k
  ),
  flagged as (
    select p.sent_at, f.id is not null as in_flight,
           coalesce(k.held or p.key_seq > k.first_seq, false) as behind
      from pending p
      left join flight f on f.id = p.id
      left join keys k on k.key_id = p.key_id
  )
  select count(*) filter (where not p.in_flight and not p.behind),
         count(*) filter (where p.in_flight),
         count(*) filter (where not p.in_flight and p.behind),
         min(p.sent_at)
    from flagged p
$$;
