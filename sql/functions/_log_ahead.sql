-- Everything of one bucket's log that a group's position c has not passed or has handed
-- out in the batch under way (c a 'hand' row): the rest of its window, and what
-- committed after the window's snapshot (not visible in c.hi: a transaction listed in
-- it, or one at or above its xmax: index probes on (bucket, xid), the list's id by id,
-- ordered by xid so that no plan takes (bucket, ord) bounded by the bucket alone (see
-- _log_open); joined by OR they would read the bucket's whole log). In no particular
-- order.
create or replace function bucketq._log_ahead(p_topic_id int, c bucketq.progress)
returns setof bucketq.message
language sql stable as $$
  select w.* from bucketq._log_window(p_topic_id, c.bucket, c.lo, c.lo_floor, c.hi, c.hi_ceil, c.early_ids, c.pos_ord, null, '-infinity') w
  union all
  (select m.* from bucketq.message m
    where m.topic_id = p_topic_id and m.bucket = c.bucket and m.xid >= pg_snapshot_xmax(c.hi)
    order by m.xid)
  union all
  select m.* from pg_snapshot_xip(c.hi) as t(xid)
   cross join lateral (
     select m.* from bucketq.message m
      where m.topic_id = p_topic_id and m.bucket = c.bucket and m.xid = t.xid
        and not pg_visible_in_snapshot(m.xid, c.hi)
      order by m.xid
     offset 0) m
  union all
  select m.* from bucketq.message m
   where c.kind = 2 and m.topic_id = p_topic_id and m.id = any(c.msg_ids)
$$;
