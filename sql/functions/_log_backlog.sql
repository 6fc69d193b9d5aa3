-- What a group has left in one bucket's log past its checkpoint: messages not yet
-- handed out and free to go (ready), behind an inbox message of their key (waiting),
-- handed out in the batch under way (in_flight), and the send time of the oldest of
-- them. For the views (hence the owner's rights); it counts, so it reads the backlog.
-- Nothing for a group the caller may not see (_may_see_group).
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
  pending as (
    select m.id, m.sent_at,
           -- handed out in a batch still running (an ended one is handed back by the next claim)
           c.kind = 2 and m.id = any(c.msg_ids)
             and case when c.lease_token is not null then c.leased_until > bucketq._now()
                      else pg_xact_status(c.xact) = 'in progress' end as in_flight,
           -- behind an inbox message of its key, or an earlier one of its key still in the log
           m.key_id is not null and (exists (select 1 from bucketq.inbox x
                                              where x.group_id = p_group_id and x.key_id = m.key_id)
                                     or row_number() over (partition by m.key_id order by m.key_seq) > 1) as behind
      from c
      cross join lateral bucketq._log_ahead(p_topic_id, c) m
     where p_start is null or m.sent_at >= p_start
  )
  select count(*) filter (where not p.in_flight and not p.behind),
         count(*) filter (where p.in_flight),
         count(*) filter (where not p.in_flight and p.behind),
         min(p.sent_at)
    from pending p
$$;
