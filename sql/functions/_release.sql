create or replace function bucketq._release(g bucketq.consumer_group, p_buckets int[]) returns void
language plpgsql as $$
declare
  c bucketq.progress;
begin
  if p_buckets is null or cardinality(p_buckets) = 0 then
    return;
  end if;
  perform 1 from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.bucket = any(p_buckets)
   order by o.bucket
     for update;
  update bucketq.bucket_owner o
     set owner = null, epoch = o.epoch + 1, moved_at = bucketq._now()
   where o.group_id = g.group_id and o.bucket = any(p_buckets);
  perform bucketq._void_old_leases(g, p_buckets, false);
  -- Leased batches read from these buckets' logs go back too, at once and without an
  -- attempt (a locked batch ends with its transaction; its ack is fenced by the epoch).
  for c in
    select p.* from unnest(p_buckets) b(bucket)
      cross join lateral (select x.* from bucketq.progress x
                           where x.group_id = g.group_id and x.bucket = b.bucket
                           order by x.seq desc limit 1) p
     where p.kind = 2 and p.lease_token is not null
  loop
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = c.bucket for update skip locked;
    continue when not found;
    -- Read again, now that we hold the cursor row: the loop's snapshot may predate an
    -- ack or a claim of the bucket that committed since. Expiring the batch it showed
    -- put messages already acked back in the inbox and moved the checkpoint back to
    -- before them: delivered twice (the demo's replaced worker saw it).
    select x.* into c from bucketq.progress x
     where x.group_id = g.group_id and x.bucket = c.bucket
     order by x.seq desc limit 1;
    continue when c.kind <> 2 or c.lease_token is null;
    perform bucketq._log_expire(g, c, bucketq._now());
  end loop;
end $$;
