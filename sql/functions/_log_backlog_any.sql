-- Whether a group has anything left in one bucket's log past its checkpoint (the batch
-- under way included): _log_backlog_count > 0, answered at the first message found
-- instead of counting them all. bucketq.groups' caught_up: a poller that waits for a
-- group to catch up (a drain's end, a deploy's check) paid for the count on every call,
-- 4.5 to 17 ms at a 10,000-message backlog, where this costs index probes. Runs as the
-- owner; false for a group the caller may not see (_may_see_group).
create or replace function bucketq._log_backlog_any(p_group_id int, p_topic_id int, p_bucket int, p_start timestamptz)
returns boolean
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
  select exists (
    select 1
      from (select p.* from bucketq.progress p
             where p.group_id = p_group_id and p.bucket = p_bucket and p.kind in (1, 2)
               and bucketq._may_see_group(p_group_id)   -- callable directly: only groups the caller may see
             order by p.seq desc limit 1) c
      cross join lateral bucketq._log_ahead(p_topic_id, c) m
     where p_start is null or m.sent_at >= p_start)
$$;

comment on function bucketq._log_backlog_any(int, int, int, timestamptz) is
'For bucketq.groups: whether one bucket''s log has any message past the group''s checkpoint that it has not acked yet (ready, in flight or waiting), stopping at the first. False for a group the caller may not see.';
