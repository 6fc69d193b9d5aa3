-- Everything of one bucket's log that a group's position c has not passed or has handed
-- out in the batch under way (c a 'hand' row): the rest of its window, and what
-- committed after the window's snapshot (not visible in c.hi: a transaction listed in
-- it, or one at or above its xmax: index probes on (bucket, xid), the list's id by id,
-- ordered by xid so that no plan takes (bucket, ord) bounded by the bucket alone (see
-- _log_open); joined by OR they would read the bucket's whole log). In no particular
-- order. The window, the in-progress list and the batch are _log_ahead_bounded's.
create or replace function bucketq._log_ahead(p_topic_id int, c bucketq.progress)
returns setof bucketq.message
language sql stable as $$
  select a.* from bucketq._log_ahead_bounded(p_topic_id, c) a
  union all
  (select m.* from bucketq.message m
    where m.topic_id = p_topic_id and m.bucket = c.bucket and m.xid >= pg_snapshot_xmax(c.hi)
    order by m.xid)
$$;
