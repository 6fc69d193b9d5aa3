-- A bucket's window (p_lo, p_hi] as it opens: its messages whose ord is not above
-- p_lo_floor, so that _log_window finds them without scanning old ords. They come from
-- transactions that took their ord before p_lo was taken and committed after it: in
-- progress at p_lo, so either listed in p_lo or with an id at or above its xmax (a
-- snapshot leaves out transactions newer than the newest that had ended). Two index
-- probes on (bucket, xid), once per window: the ids from p_lo's xmax to p_hi's, and
-- p_lo's list (as one condition joined by OR, neither bounds the index scan, which
-- then reads the bucket's whole log). Usually they find nothing. Both read (bucket,
-- xid) whatever the statistics say: the list id by id (a lateral subquery that OFFSET 0
-- keeps from being flattened: a nested loop of index probes), and both in xid order,
-- which (bucket, ord) gives only with a sort. Written as xid = ANY(the list), the
-- generic plan priced 50 probes above a scan of the bucket; with a bucket that looked
-- unique (a partition analyzed early) it priced both indexes alike; either time it took
-- (bucket, ord) bounded by the bucket alone and read the bucket's whole log on every
-- claim, 0.38 ms of a 0.6 ms trickle claim at 1,000 messages a bucket
-- (test/sql-plans.test.ts). "ord + 0": no index
-- matches it, so the plan cannot take message_window (bucket, ord), which reads the
-- bucket's log from its start; a generic plan made on a young log did. p_from: the
-- group's log_from (see _log_window). _claim's one-bucket statement asks the same two
-- probes as subqueries of its own: change them together.
drop function if exists bucketq._log_open(int, int, pg_snapshot, bigint, pg_snapshot);
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every
-- call, and without its arguments' values, so over every partition of every topic's log:
-- 1.5 ms of a 1.7 ms claim on a cluster of a few hundred partitions (Postgres 15).
create or replace function bucketq._log_open(
  p_topic_id int, p_bucket int, p_lo pg_snapshot, p_lo_floor bigint, p_hi pg_snapshot, p_from timestamptz)
returns bigint[]
language plpgsql stable as $$
begin
  return (select coalesce(array_agg(x.id), '{}') from (
    (select m.id from bucketq.message m
      where p_lo_floor > 0 and m.topic_id = p_topic_id and m.bucket = p_bucket and m.sent_at >= p_from
        and m.xid >= pg_snapshot_xmax(p_lo) and m.xid < pg_snapshot_xmax(p_hi)
        and m.ord + 0 <= p_lo_floor
        and pg_visible_in_snapshot(m.xid, p_hi)
      order by m.xid)
    union all
    select m.id from pg_snapshot_xip(p_lo) as t(xid)
     cross join lateral (
       select m.id from bucketq.message m
        where m.topic_id = p_topic_id and m.bucket = p_bucket and m.xid = t.xid and m.sent_at >= p_from
          and m.ord + 0 <= p_lo_floor
          and pg_visible_in_snapshot(m.xid, p_hi)
        order by m.xid
       offset 0) m
     where p_lo_floor > 0
  ) x);
end $$;
