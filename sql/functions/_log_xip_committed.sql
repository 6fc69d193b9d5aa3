-- For _log_busy, only when transactions were in progress at the window's snapshot (its
-- xmin below its xmax): whether one of them has a message in the bucket that is visible
-- now, committed since. A function of its own so that the probe's plan (a nested loop
-- over the snapshot's xids) is set up only when it runs: as a subplan of _log_busy it
-- was set up on every claim, called or not. ORDER BY xid LIMIT 1 reads the (bucket, xid)
-- index (see _log_busy).
-- PL/pgSQL for its plan cache (see _log_open).
create or replace function bucketq._log_xip_committed(p_topic_id int, p_bucket int, p_hi pg_snapshot, p_log_from timestamptz)
returns boolean
language plpgsql stable as $$
begin
  return exists (select 1 from pg_snapshot_xip(p_hi) as x(xid)
                  cross join lateral (select m.xid from bucketq.message m
                                       where m.topic_id = p_topic_id and m.bucket = p_bucket and m.sent_at >= p_log_from
                                         and m.xid = x.xid
                                       order by m.xid limit 1) n);
end $$;

comment on function bucketq._log_xip_committed(int, int, pg_snapshot, timestamptz) is
'Internal (claims): whether a transaction in progress at snapshot p_hi has since committed a message to the bucket.';
