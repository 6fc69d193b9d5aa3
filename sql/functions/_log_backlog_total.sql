-- How many messages a group has left in its buckets' logs past their checkpoints, the
-- batches under way included: ready, in flight and waiting together, for bucketq.groups'
-- pending (which workers with metrics read every heartbeat interval). One read of the
-- log for all buckets (_log_unacked_query). Runs as the owner; zero for a group the
-- caller may not see.
create or replace function bucketq._log_backlog_total(p_group_id int, p_topic_id int, p_buckets int, p_start timestamptz)
returns bigint
language plpgsql stable security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
declare
  v_pos bucketq.progress[];
  v_count bigint;
begin
  -- The views pass the group's own topic and bucket count; a direct caller that names
  -- another topic is not told how many of its messages lie past this group's positions.
  if not exists (select 1 from bucketq.consumer_group x join bucketq.topic t on t.topic_id = x.topic_id
                  where x.group_id = p_group_id and x.topic_id = p_topic_id and t.buckets = p_buckets) then
    return 0;
  end if;
  v_pos := bucketq._log_positions(p_group_id, p_buckets);
  if v_pos is null then
    return 0;
  end if;
  execute format('select count(*) from (%s) u', bucketq._log_unacked_query(p_topic_id, v_pos, p_buckets, p_start))
    into v_count using v_pos;
  return v_count;
end $$;

comment on function bucketq._log_backlog_total(int, int, int, timestamptz) is
'For bucketq.groups: how many messages of the group''s buckets'' logs (buckets 0 to p_buckets - 1) it has not acked yet past their checkpoints (ready, in flight and waiting together), without reading the inbox. Zero for a group the caller may not see, or when p_topic_id and p_buckets are not the group''s topic and its bucket count.';
