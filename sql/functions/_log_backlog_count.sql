-- How many messages a group has left in one bucket's log past its checkpoint, in the
-- batch under way included: the sum of _log_backlog's ready, in_flight and waiting,
-- without telling them apart (no key or batch lookups), for bucketq.groups' pending,
-- which workers with metrics read on every heartbeat (a 100,000-message backlog: 24
-- ms, against 290 through _log_backlog). Runs as the owner; nothing for a group the
-- caller may not see (_may_see_group).
create or replace function bucketq._log_backlog_count(p_group_id int, p_topic_id int, p_bucket int, p_start timestamptz)
returns bigint
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
  select count(*) from bucketq._log_unacked(p_group_id, p_topic_id, p_bucket, p_start)
$$;

comment on function bucketq._log_backlog_count(int, int, int, timestamptz) is
'For bucketq.groups: how many messages of one bucket''s log the group has not acked yet past its checkpoint (ready, in flight and waiting together), without reading the inbox. Zero for a group the caller may not see.';
