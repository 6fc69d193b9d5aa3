create or replace function bucketq.join(group_name text, consumer_id text, meta jsonb default null)
returns table (bucket int, epoch bigint)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_consumer text := $2;  -- "join" is a keyword, so parameters cannot be qualified with it
  v_meta jsonb := $3;
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('join', v_consumer);
  v_now := bucketq._now();
  insert into bucketq.consumer as c (group_id, consumer_id, joined_at, heartbeat_at, meta)
  values (g.group_id, v_consumer, v_now, v_now, v_meta)
  on conflict (group_id, consumer_id) do update
     set joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at, meta = coalesce(excluded.meta, c.meta);
  -- A join starts a new session: whatever this id held before is released (its
  -- leases belong to a previous incarnation that is gone).
  perform bucketq._release(g,
    (select array_agg(o.bucket) from bucketq.bucket_owner o
      where o.group_id = g.group_id and o.owner = v_consumer));
  return query select * from bucketq.heartbeat(group_name, v_consumer);
end $$;

comment on function bucketq.join(text, text, jsonb) is
'Register a consumer in a group''s lobby (meta: free-form JSON such as host and pid) and take its fair share of buckets. Returns the buckets it owns with their epochs. Use a fresh consumer_id per process start; joining again with the same id starts a new session.';
