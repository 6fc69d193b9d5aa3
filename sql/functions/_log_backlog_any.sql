-- Whether a group has anything left in one bucket's log past its checkpoint (the batch
-- under way included): its count > 0 (_log_backlog_total), answered at the first message
-- found instead of counting them all. bucketq.groups' caught_up: a poller that waits for
-- a group to catch up (a drain's end, a deploy's check) paid for the count on every call.
--
-- Each part is asked on its own. Asked as one union (_log_ahead) under EXISTS, the
-- planner costed the part past the window's snapshot for all its rows, and with a
-- backlog sorted the bucket's whole rest by xid before the first row (1.5 s a bucket at
-- 10.7 million messages). That part is asked here for its first xid in xid order, the
-- (bucket, xid) index's first entry; under a bare EXISTS the order is dropped, and the
-- planner may take a sequential scan of the topic's log hoping for an early row.
-- Runs as the owner; false for a group the caller may not see.
create or replace function bucketq._log_backlog_any(p_group_id int, p_topic_id int, p_bucket int, p_start timestamptz)
returns boolean
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
  -- (p_topic_id must be the group's own: a direct caller is not told about another topic)
  select exists (select 1 from bucketq.consumer_group x where x.group_id = p_group_id and x.topic_id = p_topic_id)
     and exists (
       select 1
         from (select p.* from bucketq.progress p
                where p.group_id = p_group_id and p.bucket = p_bucket and p.kind in (1, 2)
                  and bucketq._may_see_group(p_group_id)   -- callable directly: only groups the caller may see
                order by p.seq desc limit 1) c
        where exists (select 1 from bucketq._log_ahead_bounded(p_topic_id, c) m
                       where p_start is null or m.sent_at >= p_start)
           or (select m.xid from bucketq.message m
                where m.topic_id = p_topic_id and m.bucket = c.bucket and m.xid >= pg_snapshot_xmax(c.hi)
                  and (p_start is null or m.sent_at >= p_start)
                order by m.xid limit 1) is not null)
$$;

comment on function bucketq._log_backlog_any(int, int, int, timestamptz) is
'For bucketq.groups: whether one bucket''s log has any message past the group''s checkpoint that it has not acked yet (ready, in flight or waiting), stopping at the first. False for a group the caller may not see, or when p_topic_id is not the group''s topic.';
