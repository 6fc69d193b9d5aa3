-- The parts of _log_ahead that a window or a batch bounds, for one bucket's position c:
-- the rest of its window, the messages of transactions in progress at the window's
-- snapshot (its list, id by id on (bucket, xid)), and the batch under way (c a 'hand'
-- row). What committed at or above the snapshot's xmax is the unbounded rest: _log_ahead
-- reads it per bucket, _log_unacked_query for all buckets at once. In no particular order.
create or replace function bucketq._log_ahead_bounded(p_topic_id int, c bucketq.progress)
returns setof bucketq.message
language sql stable as $$
  select w.* from bucketq._log_window(p_topic_id, c.bucket, c.lo, c.lo_floor, c.hi, c.hi_ceil, c.early_ids, c.pos_ord, null, '-infinity') w
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

comment on function bucketq._log_ahead_bounded(int, bucketq.progress) is
'Internal: of one bucket''s log past position c, the parts a window or a batch bounds: the rest of the window, the messages of transactions in progress at its snapshot, and the batch under way. _log_ahead adds what committed after the snapshot.';
