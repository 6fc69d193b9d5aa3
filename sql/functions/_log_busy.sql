-- Which of these buckets a claim has anything to do in, in one statement (an index probe
-- or two each; idle buckets cost nothing more), and what:
--   'o' its latest batch is over without having settled (expired lease, a bucket that
--       moved, a locked batch that ended): _log_expire_due puts it in the inbox first;
--   'r' the rest of the current window (position below its end);
--   'n' the window is used up, but something committed since its snapshot;
--   'l' its latest batch is still running (a live lease, a locked batch in progress):
--       nothing to claim now, but not idle either (_log_quiet remembers only buckets
--       this returns nothing for).
-- seq: the progress row it was decided on. If that is still the bucket's latest row
-- when the claim has its cursor row locked, 'r' and 'n' still hold (a window's messages
-- are fixed once its snapshot is taken), so _log_claim needs no probe of its own.
--
-- The latest progress row: first among those from p_recent on, else among all. A bucket's
-- rows are its delivery records too (kept for the retention), and an index scan reads a
-- leaf page's matching entries at once: the latest of a bucket of 730 rows cost 6 µs
-- more than that of a new one, 0.1 ms a claim of 16 buckets. Bounded by p_recent (the
-- caller passes the progress sequence's last value less 64 a bucket), a bucket that had
-- a batch lately reads a few entries; the answer is the same (a row from p_recent on is
-- the latest of all, if there is one), and an older bucket costs one more probe.
drop function if exists bucketq._log_busy(bucketq.consumer_group, int[], bigint[], timestamptz);
create or replace function bucketq._log_busy(g bucketq.consumer_group, p_buckets int[], p_epochs bigint[], p_now timestamptz,
                                             p_recent bigint)
returns table (bucket int, epoch bigint, seq bigint, state "char")
language sql stable as $$
  select x.bucket, x.epoch, lp.seq, f.state
    from unnest(p_buckets, p_epochs) as x(bucket, epoch)
    -- (COALESCE runs the second probe only when the first finds nothing; OFFSET 0 keeps
    -- the row computed once, not once a field.)
    cross join lateral (
      select (s.r).* from (
        select coalesce(
                 (select p from bucketq.progress p
                   where p.group_id = g.group_id and p.bucket = x.bucket and p.seq >= p_recent
                   order by p.seq desc limit 1),
                 (select p from bucketq.progress p
                   where p.group_id = g.group_id and p.bucket = x.bucket
                   order by p.seq desc limit 1)) as r
        offset 0) s
       where (s.r).seq is not null) lp
    -- OFFSET 0: decided once per bucket. Pulled up, each use of a condition was a
    -- subplan of its own: the window's probe was planned and run twice.
    cross join lateral (
      select (case
                when lp.kind <> 1 then case when bucketq._log_batch_live(lp, x.epoch, p_now) then 'l' else 'o' end
                -- The rest of the window: _log_window's two parts, written out as two
                -- probes (its plan, a union of the two under a sort and a limit, took a
                -- tenth of an empty claim to set up), each ordered as _log_window has it.
                -- The window's probe reads (bucket, ord) from the position and stops at its
                -- first row. ORDER BY ord LIMIT 1 sit in a subquery: written in the EXISTS
                -- itself, Postgres drops them, and a plan made on a log that looked empty
                -- took (bucket, xid) with the bucket as its only bound, reading the
                -- bucket's whole history (9,322 rows a claim).
                when greatest(lp.pos_ord, lp.lo_floor) < lp.hi_ceil
                     and exists (select 1 from (select m.ord from bucketq.message m
                                                 where m.topic_id = g.topic_id and m.bucket = lp.bucket and m.sent_at >= g.log_from
                                                   and m.ord > greatest(lp.pos_ord, lp.lo_floor) and m.ord <= lp.hi_ceil
                                                   and pg_visible_in_snapshot(m.xid, lp.hi)
                                                   and not pg_visible_in_snapshot(m.xid, lp.lo)
                                                 order by m.ord limit 1) w)
                  -- (The two rare probes are functions: as subplans they were set up on
                  -- every claim, run or not, some 20 µs of an empty claim's 330.)
                  or cardinality(lp.early_ids) > 0
                     and bucketq._log_early_ahead(g.topic_id, lp.early_ids, lp.pos_ord, g.log_from) then 'r'
                -- ORDER BY xid LIMIT 1: read the (bucket, xid) index. A bare EXISTS is planned
                -- for its first row and became a sequential scan of the bucket's partitions
                -- (a claim of a 40,000-message backlog spent 13 ms here).
                when exists (select 1 from (select m.xid from bucketq.message m
                                             where m.topic_id = g.topic_id and m.bucket = lp.bucket and m.sent_at >= g.log_from
                                               and m.xid >= pg_snapshot_xmax(lp.hi)
                                             order by m.xid limit 1) n)
                     or pg_snapshot_xmin(lp.hi) < pg_snapshot_xmax(lp.hi)
                        and bucketq._log_xip_committed(g.topic_id, lp.bucket, lp.hi, g.log_from) then 'n'
              end)::"char" as state
      offset 0) f
   where f.state is not null
$$;
