-- Make due rows of these buckets ready in the caller's transaction: retries whose
-- backoff ended, not_before reached, and expired leases (taken with claim: tails wait
-- behind their heads again, heads whose attempts are spent are dead-lettered). Rows
-- locked elsewhere are left for later.
create or replace function bucketq._ready_due(g bucketq.consumer_group, p_buckets int[], p_now timestamptz, p_limit int)
returns void
language plpgsql as $$
declare
  v_expired bigint[];
  v_exhausted bigint[];
  v_delayed bigint[];
begin
  select array_agg(x.msg_id) filter (where x.state = 1), array_agg(x.msg_id) filter (where x.state = 2)
    into v_expired, v_delayed
    from (select i.msg_id, i.state from bucketq.inbox i
           where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= p_now
             and i.bucket = any(p_buckets)
           order by i.available_at
           limit p_limit
             for no key update skip locked) x;
  if v_expired is not null then
    select array_agg(u.msg_id) filter (where u.head and u.attempts >= g.max_attempts) into v_exhausted
      from bucketq._unlease(g.group_id, v_expired, v_expired) u;
    if v_exhausted is not null then
      perform bucketq._dead_letter(g, v_exhausted,
        array_fill(format('lease expired after %s attempts', g.max_attempts), array[cardinality(v_exhausted)]));
    end if;
  end if;
  if v_delayed is not null then
    update bucketq.inbox i set state = 0, available_at = null
     where i.group_id = g.group_id and i.msg_id = any(v_delayed);
  end if;
end $$;
