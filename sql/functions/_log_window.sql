-- The messages of one bucket's log window (visible in snapshot p_hi, not in p_lo) with
-- ord above p_after, in no particular order (callers sort by ord). Those that took
-- their ord after p_lo's floor was read: one index range up to p_hi_ceil (nothing
-- visible in p_hi took a later one). The others came from transactions in progress at
-- p_lo and are listed in p_early (see _log_open). Inlined into the caller's query.
-- p_limit (NULL: all) caps each of the two parts, in ord order: a caller that wants the
-- first p_limit by ord reads that many index entries, not the whole rest of the window
-- (a bitmap scan of a 1,700-message window, sorted for the first 250, cost each of a
-- drain's claims 3 ms). The first condition of each part involves no row: an empty ord
-- range or no early ids skips it without visiting the log's partitions (claims probe
-- every owned bucket's window). p_from: the group's log_from (a parameter of the
-- caller's query, so that the partitions below it are pruned before they are opened),
-- or '-infinity' to read all of the log.
drop function if exists bucketq._log_window(int, int, pg_snapshot, bigint, pg_snapshot, bigint, bigint[], bigint);
drop function if exists bucketq._log_window(int, int, pg_snapshot, bigint, pg_snapshot, bigint, bigint[], bigint, bigint);
create or replace function bucketq._log_window(
  p_topic_id int, p_bucket int, p_lo pg_snapshot, p_lo_floor bigint, p_hi pg_snapshot, p_hi_ceil bigint,
  p_early bigint[], p_after bigint, p_limit bigint, p_from timestamptz)
returns setof bucketq.message
language sql stable as $$
  (select m.* from bucketq.message m
    where greatest(p_after, p_lo_floor) < p_hi_ceil
      and m.topic_id = p_topic_id and m.bucket = p_bucket and m.sent_at >= p_from
      and m.ord > greatest(p_after, p_lo_floor) and m.ord <= p_hi_ceil
      and pg_visible_in_snapshot(m.xid, p_hi) and not pg_visible_in_snapshot(m.xid, p_lo)
    order by m.ord limit p_limit)
  union all
  (select m.* from bucketq.message m
    where cardinality(p_early) > 0
      and m.topic_id = p_topic_id and m.id = any(p_early) and m.ord > p_after and m.sent_at >= p_from
    order by m.ord limit p_limit)
$$;
