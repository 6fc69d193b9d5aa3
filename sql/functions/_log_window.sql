-- The messages of one bucket's log window (visible in snapshot p_hi, not in p_lo) with
-- ord above p_after, in no particular order (callers sort by ord). Those that took
-- their ord after p_lo's floor was read: one index range up to p_hi_ceil (nothing
-- visible in p_hi took a later one). The others came from transactions in progress at
-- p_lo and are listed in p_early (see _log_open). Inlined into the caller's query, so
-- an ORDER BY ord LIMIT there stops the range scan early. The first condition of each
-- branch involves no row: an empty ord range or no early ids skips the branch without
-- visiting the log's partitions (claims probe every owned bucket's window).
create or replace function bucketq._log_window(
  p_topic_id int, p_bucket int, p_lo pg_snapshot, p_lo_floor bigint, p_hi pg_snapshot, p_hi_ceil bigint,
  p_early bigint[], p_after bigint)
returns setof bucketq.message
language sql stable as $$
  select m.* from bucketq.message m
   where greatest(p_after, p_lo_floor) < p_hi_ceil
     and m.topic_id = p_topic_id and m.bucket = p_bucket
     and m.ord > greatest(p_after, p_lo_floor) and m.ord <= p_hi_ceil
     and pg_visible_in_snapshot(m.xid, p_hi) and not pg_visible_in_snapshot(m.xid, p_lo)
  union all
  select m.* from bucketq.message m
   where cardinality(p_early) > 0
     and m.topic_id = p_topic_id and m.id = any(p_early) and m.ord > p_after
$$;
