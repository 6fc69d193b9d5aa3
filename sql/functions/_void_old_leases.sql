-- Lost leases (rebalance, leave, a dead consumer): the messages are handed back (a
-- run's tail waits behind its head again) and, when asked, the attempt counts.
create or replace function bucketq._void_old_leases(g bucketq.consumer_group, p_buckets int[], p_count_attempt boolean)
returns void
language plpgsql as $$
declare
  v_victims bigint[];
  v_counted bigint[];
  v_exhausted bigint[];
  v_dead_after timestamptz := bucketq._now() - g.session_timeout;
begin
  if p_buckets is null then
    return;
  end if;
  select array_agg(x.msg_id),
         array_agg(x.msg_id) filter (where p_count_attempt and exists (
           select 1 from bucketq._consumer_now c
            where c.group_id = g.group_id and c.consumer_id = x.consumer_id and c.heartbeat_at <= v_dead_after))
    into v_victims, v_counted
    from (select x.msg_id, x.consumer_id
            from bucketq.inbox x
            join bucketq.bucket_owner o on o.group_id = x.group_id and o.bucket = x.bucket
           where x.group_id = g.group_id and x.bucket = any(p_buckets) and x.state = 1
             and (o.owner is null or x.epoch is distinct from o.epoch or x.consumer_id is distinct from o.owner)
           order by x.key_id, x.msg_id
             for update of x skip locked) x;
  if v_victims is null then
    return;
  end if;
  select array_agg(u.msg_id) filter (where u.head and u.attempts >= g.max_attempts) into v_exhausted
    from bucketq._unlease(g.group_id, v_victims, coalesce(v_counted, '{}')) u;
  if p_count_attempt and v_exhausted is not null then
    perform bucketq._dead_letter(g, v_exhausted,
      array_fill(format('its consumer was lost (crash, pause or fencing) during attempt %s of %s', g.max_attempts, g.max_attempts),
                 array[cardinality(v_exhausted)]));
  end if;
end $$;
