-- Before a claim reads anything: batches of these buckets that are over without having
-- settled (an expired lease, a bucket that moved, a locked batch that ended) go to the
-- inbox as expired leases, so that this very claim hands them out again (attempt + 1)
-- or dead-letters them. One index probe per bucket when there is nothing to do.
create or replace function bucketq._log_expire_due(g bucketq.consumer_group, p_buckets int[], p_epochs bigint[], p_now timestamptz)
returns void
language plpgsql as $$
declare
  c bucketq.progress;
  v_b int;
  v_e bigint;
begin
  for i in 1 .. coalesce(cardinality(p_buckets), 0) loop
    v_b := p_buckets[i];
    v_e := p_epochs[i];
    select * into c from bucketq.progress p where p.group_id = g.group_id and p.bucket = v_b order by p.seq desc limit 1;
    continue when c.kind is null or c.kind = 1 or bucketq._log_batch_live(c, v_e, p_now);
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = v_b for update skip locked;
    continue when not found;
    select * into c from bucketq.progress p where p.group_id = g.group_id and p.bucket = v_b order by p.seq desc limit 1;
    continue when c.kind = 1 or bucketq._log_batch_live(c, v_e, p_now);
    perform bucketq._log_expire(g, c, p_now);
  end loop;
end $$;
