create or replace function bucketq.leave(group_name text, consumer_id text) returns int
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_buckets int[];
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('leave', g);
  end if;
  perform bucketq._check_consumer('leave', g, consumer_id);
  -- The consumer row first, as heartbeat and join take it: a heartbeat of this id in
  -- flight finishes first, or finds the consumer gone (BQ008).
  delete from bucketq.consumer c where c.group_id = g.group_id and c.consumer_id = leave.consumer_id;
  if not found and not bucketq._caller_is_admin() then
    -- No consumer row binds this id to the caller: its buckets are not the caller's
    -- to release (they fail over when their session times out).
    return 0;
  end if;
  select array_agg(o.bucket) into v_buckets from (
    select o.bucket from bucketq.bucket_owner o
     where o.group_id = g.group_id and o.owner = leave.consumer_id
     order by o.bucket
     for update) o;
  perform bucketq._release(g, v_buckets);
  return coalesce(cardinality(v_buckets), 0);
end $$;

comment on function bucketq.leave(text, text) is
'Leave a group: release every bucket the consumer owns (epochs bumped, its unacked leases handed back at once) and remove it from the lobby. Returns how many buckets were released. Finish or nack in-flight messages first: their acks fail after leave. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could miss batches acked while it waited to release their buckets, and hand their messages out again).';
