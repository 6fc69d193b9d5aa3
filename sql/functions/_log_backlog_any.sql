-- Whether a group has anything left in one bucket's log past its checkpoint (the batch
-- under way included): its count > 0 (_log_backlog_total), answered at
-- the first message found instead of counting them all. bucketq.groups' caught_up: a
-- poller that waits for a group to catch up (a drain's end, a deploy's check) paid for
-- the count on every call, 4.5 to 17 ms at a 10,000-message backlog, where this costs
-- index probes. Runs as the owner; false for a group the caller may not see.
create or replace function bucketq._log_backlog_any(p_group_id int, p_topic_id int, p_bucket int, p_start timestamptz)
returns boolean
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
  -- (p_topic_id must be the group's own: a direct caller is not told about another topic)
  select exists (select 1 from bucketq.consumer_group x where x.group_id = p_group_id and x.topic_id = p_topic_id)
         and exists (select 1 from bucketq._log_unacked(p_group_id, p_topic_id, p_bucket, p_start))
$$;

comment on function bucketq._log_backlog_any(int, int, int, timestamptz) is
'For bucketq.groups: whether one bucket''s log has any message past the group''s checkpoint that it has not acked yet (ready, in flight or waiting), stopping at the first. False for a group the caller may not see, or when p_topic_id is not the group''s topic.';
