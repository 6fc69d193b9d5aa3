-- Which of a claim's buckets it need not look at: those the session's previous claim
-- found idle and nothing has been committed to since. Without it, every claim reads the
-- latest progress row and probes the log of every bucket the consumer owns (_log_busy,
-- 3 to 4 µs a bucket): 4 ms a claim for a consumer of 1,024 buckets, however few have
-- anything new. Claims use it for consumers of 32 buckets or more (below that, reading
-- and writing the note costs about what it saves).
--
-- The note (bucketq.quiet_<group_id>, a session setting written by _log_quiet_save)
-- holds a snapshot S, the buckets a claim's _log_busy returned something for (seen),
-- when, and the consumer. Every other bucket the consumer owned then was idle at S: its
-- latest progress row is a done row (kind 1) whose window is used up, and every message
-- of the bucket visible in S is inside that row's windows. Such a bucket stays idle
-- until a message of it not visible in S commits, for nothing else writes its progress:
-- claims and acks of it need such a message first (a lease comes from a claim), and
-- rewind, skip_to_latest, pause, resume and a change of owner bump its epoch and set
-- bucket_owner.moved_at. maintain() only prunes rows below the latest. So a bucket the
-- consumer owns is quiet when:
--
--   * it has not moved since the note was taken (moved_at before it: owned then, at the
--     same epoch), and the note did not see it;
--   * no message of it is visible now that was not in S: none with a transaction id at
--     or above S's xmax, none from a transaction in progress at S (its xip list: one
--     equality probe each, so a transaction held open for hours costs one probe, not a
--     scan of everything sent since it began). One scan of the (bucket, xid) index for
--     all those buckets; none when the note saw every bucket busy.
--
-- The rest are scanned as before. snap is taken here, before that scan: every quiet
-- bucket was idle at it, and so was every bucket the claim's _log_busy (a later
-- statement, a later snapshot) returns nothing for. The caller passes it to
-- _log_quiet_save with what _log_busy returned.
--
-- A note more than a second old, of another consumer, or in a form this does not
-- recognise is not used (so a bucket is looked at at least once a second, whatever
-- happens; tests lengthen that with bucketq.quiet_ttl_ms, up to an hour, so that they
-- fail if a note hides a bucket it should not); nor a note that saw more than 64
-- buckets busy, nor one whose buckets were sent 500 messages or more since, or more than
-- 64 of them (a busy topic: its buckets are rarely idle, and those checks go bucket by
-- bucket through these lists). The note is the session's own: a session that forges
-- one only keeps its own claims from its own buckets, which it could do by not
-- claiming.
create or replace function bucketq._log_quiet(
  g bucketq.consumer_group, p_consumer text, p_owned int[], p_epochs bigint[], p_moved timestamptz[], p_now timestamptz,
  out scan int[], out scan_epochs bigint[], out snap pg_snapshot)
language plpgsql as $$
declare
  v_note text := current_setting('bucketq.quiet_' || g.group_id, true);
  v_parts text[];
  v_at timestamptz;
  v_old pg_snapshot;
  v_seen int[];
begin
  snap := pg_current_snapshot();
  scan := p_owned;
  scan_epochs := p_epochs;
  -- group;snapshot;{seen};microseconds since 1970;consumer (the consumer last: it may
  -- hold any character)
  if v_note is null or v_note !~ '^[0-9]+;[0-9]+:[0-9]+:[0-9,]*;\{[0-9,]*\};[0-9]+;' then
    return;
  end if;
  v_parts := string_to_array(v_note, ';');
  v_at := timestamptz 'epoch' + (v_parts[4] || ' microseconds')::interval;
  if v_parts[1]::int <> g.group_id
     or substr(v_note, length(array_to_string(v_parts[1:4], ';')) + 2) is distinct from p_consumer
     or v_at > p_now
     or v_at < p_now - least(coalesce(nullif(current_setting('bucketq.quiet_ttl_ms', true), '')::int, 1000), 3600000)
                       * interval '1 millisecond' then
    return;
  end if;
  v_old := v_parts[2]::pg_snapshot;
  v_seen := v_parts[3]::int[];
  -- The checks below go bucket by bucket through these arrays: kept short, so that a
  -- claim of 1,024 buckets never compares a million pairs. A note that saw more than 64
  -- buckets busy (a busy topic) is not worth it.
  if cardinality(v_seen) > 64 then
    return;
  end if;

  -- The note's idle buckets still owned and unmoved (owned then, at the same epoch);
  -- of those, the ones sent to since. No scan of the log when there are none, as when
  -- the note saw every bucket busy.
  with idle as (
    select coalesce(array_agg(o.b), '{}') as buckets
      from unnest(p_owned, p_moved) as o(b, m)
     where o.m < v_at and not (o.b = any(v_seen))
  ), news as (
    select coalesce(array_agg(distinct x.bucket), '{}') as buckets, count(*) as n
      from ((select m.bucket from bucketq.message m
              where m.topic_id = g.topic_id and m.sent_at >= g.log_from
                and m.bucket = any((select i.buckets from idle i)::int[]) and m.xid >= pg_snapshot_xmax(v_old)
              limit 500)
            union all
            -- (the list id by id, see _log_open)
            (select m.bucket from pg_snapshot_xip(v_old) as t(xid)
              cross join lateral (
                select m.bucket from bucketq.message m
                 where m.topic_id = g.topic_id and m.sent_at >= g.log_from
                   and m.bucket = any((select i.buckets from idle i)::int[]) and m.xid = t.xid
                offset 0) m
              where pg_snapshot_xmin(v_old) < pg_snapshot_xmax(v_old)
              limit 500)) x
  )
  select coalesce(array_agg(o.b), '{}'), coalesce(array_agg(o.e), '{}')
    into scan, scan_epochs
    from news
   cross join lateral (
     select o.b, o.e from unnest(p_owned, p_epochs, p_moved) as o(b, e, m)
      where news.n >= 500 or cardinality(news.buckets) > 64
         or o.m is null or o.m >= v_at or o.b = any(v_seen) or o.b = any(news.buckets)) o;
end $$;

comment on function bucketq._log_quiet(bucketq.consumer_group, text, int[], bigint[], timestamptz[], timestamptz) is
'Internal (claims): of the buckets a consumer owns (p_owned at p_epochs, moved at p_moved), those to look at (scan, scan_epochs): all but those its session''s previous claim found idle, unmoved since, and nothing has been committed to since; and the snapshot to note for the next claim (_log_quiet_save). Without a usable note (bucketq.quiet_<group_id>, at most a second old) every bucket is scanned.';
