create or replace function bucketq.resume_group(group_name text) returns int
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_count int;
  v_topic text;
begin
  g := bucketq._group(group_name);
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  update bucketq.bucket_owner o
     set owner = null, epoch = o.epoch + 1, moved_at = bucketq._now()
   where o.group_id = g.group_id and o.owner = '';
  get diagnostics v_count = row_count;
  select t.name into v_topic from bucketq.topic t where t.topic_id = g.topic_id;
  perform pg_notify('bucketq', v_topic);
  return v_count;
end $$;

comment on function bucketq.resume_group(text) is
'Resume a group paused by pause_group: its buckets are free again and its consumers take their fair share at their next heartbeat. Returns the number of buckets resumed (0: it was not paused).';
