-- Which groups a reader of bucketq.groups sees: those it may consume, and every group
-- for monitors (bucketq_monitor, which bucketq_admin is a member of).
create or replace function bucketq._may_see_group(p_group_id int) returns boolean
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
  select bucketq._may_consume(p_group_id) or bucketq._caller_is(bucketq._role('monitor'))
$$;

comment on function bucketq._may_see_group(int) is
'True when the caller may see the group in bucketq.groups: it may consume it, or it is a member of bucketq_monitor.';
