-- A paused group's buckets belong to nobody who can claim: owner '' (the empty
-- consumer id, which _check_consumer_id refuses to every consumer), which heartbeat
-- never takes over (it has no consumer row to expire) and claim finds no bucket of.
create or replace function bucketq.pause_group(group_name text) returns int
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_count int;
begin
  g := bucketq._group(group_name);
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  update bucketq.bucket_owner o
     set owner = '', epoch = o.epoch + 1, moved_at = bucketq._now()
   where o.group_id = g.group_id and o.owner is distinct from '';
  get diagnostics v_count = row_count;
  return v_count;
end $$;

comment on function bucketq.pause_group(text) is
'Pause a consumer group: its consumers lose every bucket (epochs bump, so acks of batches in flight are refused and those messages come back after resume) and take none until resume_group. Producers are not affected: messages keep arriving and wait. In bucketq.buckets a paused bucket has owner '''' (empty). Returns the number of buckets paused now (0: already paused).';
