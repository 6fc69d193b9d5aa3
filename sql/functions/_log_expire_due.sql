-- Before a claim reads anything: batches of these buckets that are over without having
-- settled (an expired lease, a bucket that moved, a locked batch that ended) go to the
-- inbox as expired leases, so that this very claim hands them out again (attempt + 1)
-- or dead-letters them. One statement finds them (an index probe per bucket, for the
-- latest progress row); usually there are none.
create or replace function bucketq._log_expire_due(g bucketq.consumer_group, p_buckets int[], p_epochs bigint[], p_now timestamptz)
returns void
language plpgsql as $$
declare
  c bucketq.progress;
  v_b int;
  v_e bigint;
begin
  for v_b, v_e in
    select x.bucket, x.epoch
      from unnest(p_buckets, p_epochs) as x(bucket, epoch)
      cross join lateral (select p.* from bucketq.progress p
                           where p.group_id = g.group_id and p.bucket = x.bucket
                           order by p.seq desc limit 1) lp
     where lp.kind <> 1 and not bucketq._log_batch_live(lp, x.epoch, p_now)
  loop
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = v_b for update skip locked;
    continue when not found;
    select * into c from bucketq.progress p where p.group_id = g.group_id and p.bucket = v_b order by p.seq desc limit 1;
    continue when c.kind = 1 or bucketq._log_batch_live(c, v_e, p_now);
    perform bucketq._log_expire(g, c, p_now);
  end loop;
end $$;
