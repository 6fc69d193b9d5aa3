create or replace function bucketq._release(g bucketq.consumer_group, p_buckets int[]) returns void
language plpgsql as $$
begin
  if p_buckets is null or cardinality(p_buckets) = 0 then
    return;
  end if;
  perform 1 from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.bucket = any(p_buckets)
   order by o.bucket
     for update;
  update bucketq.bucket_owner o
     set owner = null, epoch = o.epoch + 1, heartbeat_at = null, moved_at = bucketq._now()
   where o.group_id = g.group_id and o.bucket = any(p_buckets);
  perform bucketq._void_old_leases(g, p_buckets, false);
end $$;
