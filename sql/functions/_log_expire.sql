-- A bucket's latest progress row is a batch that is over without having settled: a
-- lease that expired or whose bucket moved, a locked batch that committed without
-- acking, or (an 'attempt' row) a locked batch whose transaction ended without
-- committing. Its messages go to the inbox as expired leases, their attempt counted,
-- where claims hand them out again (or dead-letter them once attempts are spent), and a
-- new checkpoint passes them. Returns that checkpoint. The caller holds the cursor row.
create or replace function bucketq._log_expire(g bucketq.consumer_group, c bucketq.progress, p_now timestamptz)
returns bucketq.progress
language plpgsql as $$
declare
  d bucketq.progress;
  v_lo pg_snapshot;
  v_lo_floor bigint;
  v_hi pg_snapshot;
  v_hi_floor bigint;
  v_hi_ceil bigint;
  v_early bigint[];
  v_pos_ord bigint;
  v_pos_id bigint;
  v_last record;
  v_ids bigint[];
  v_old bigint[];
  v_since bigint;
  v_hand boolean := false;
  s record;
  v_counted bigint[];
  v_spent bigint[];
begin
  if c.kind = 3 and pg_xact_status(c.xact) = 'committed'
     and not exists (select 1 from bucketq.progress p where p.xact = c.xact and p.kind = 1 and p.group_id + 0 = c.group_id) then
    -- The noted transaction committed without settling its batch: handed back on
    -- purpose, as its hand row says (below), not a crash.
    select * into d from bucketq.progress p
     where p.xact = c.xact and p.kind = 2 and p.group_id + 0 = c.group_id and p.bucket + 0 = c.bucket
     order by p.seq + 0 desc limit 1;  -- (by the xact index, not the primary key: see _log_settle)
    if found then
      c := d;
    end if;
  end if;
  -- The window and position of the row that decides (a hand row's, not a note's
  -- placeholders '1:1:' and 0: a checkpoint written from those restarted the bucket's
  -- log from its beginning and delivered every message of it again). The attempt branch
  -- below takes them from the last checkpoint instead.
  v_lo := c.lo; v_lo_floor := c.lo_floor; v_hi := c.hi; v_hi_floor := c.hi_floor; v_hi_ceil := c.hi_ceil;
  v_early := c.early_ids; v_pos_ord := c.pos_ord; v_pos_id := c.pos_id;
  if c.kind = 2 then
    -- A locked batch's hand row outlives its transaction only if that committed without
    -- settling: handed back on purpose (a stop that ran out of time), not a crash (a
    -- crash aborts, and record_attempt's note counts it).
    if c.lease_token is not null and (c.leased_until <= p_now
       or exists (select 1 from bucketq._consumer_now x
                   where x.group_id = c.group_id and x.consumer_id = c.consumer_id
                     and x.joined_at <= c.created_at and x.heartbeat_at <= p_now - g.session_timeout)) then
      -- Expired, or its consumer died: the attempt counts; as expired leases, which the
      -- claim then hands out again or dead-letters.
      perform bucketq._log_materialize(g, c.msg_ids, c.msg_ids, true,
                                       c.lease_token,
                                       least(coalesce(c.leased_until, p_now), p_now), c.consumer_id, c.epoch, p_now);
    else
      -- Cut short by its consumer leaving, joining again or giving the bucket up alive (a
      -- rebalance): handed back as they were, each key's first ready, its run behind it.
      perform bucketq._log_materialize(g, c.msg_ids, '{}', false, null, null, null, null, p_now);
    end if;
  else
    -- The attempt's own hand row went with its transaction; the last row before the
    -- notes is where it started: a checkpoint, or a hand that never settled (a lease
    -- that expired). The noted claim had expired that hand, then rolled back with it:
    -- the hand is expired first. Counting from the checkpoint before it read again what
    -- the hand had passed, whose waiting and delayed messages were in the inbox already
    -- (test/sql-random-sessions.test.ts found it: delivered twice, or left waiting behind nothing).
    select * into d from bucketq.progress p
     where p.group_id = c.group_id and p.bucket = c.bucket and p.kind in (1, 2)
     order by p.seq desc limit 1;
    v_since := d.seq;
    if d.kind = 2 then
      d := bucketq._log_expire(g, d, p_now);
      v_hand := true;
    end if;
    -- A batch that settled before its attempt was recorded is done.
    if exists (select 1 from bucketq.progress p where p.xact = c.xact and p.kind = 1 and p.group_id + 0 = c.group_id) then
      return d;
    end if;
    v_lo := d.lo; v_lo_floor := d.lo_floor; v_hi := d.hi; v_hi_floor := d.hi_floor; v_hi_ceil := d.hi_ceil;
    v_early := d.early_ids; v_pos_ord := d.pos_ord; v_pos_id := d.pos_id;
    -- Every attempt noted since that checkpoint counts: an earlier crash's messages went
    -- to the inbox in a claim that itself did not commit.
    select coalesce(array_agg(u.id), '{}') into v_counted
      from bucketq.progress p cross join unnest(p.msg_ids) u(id)
     where p.group_id = c.group_id and p.bucket = c.bucket and p.kind = 3 and p.seq > v_since
       and pg_xact_status(p.xact) is distinct from 'in progress' and pg_xact_status(p.xact) is distinct from 'committed';
    if v_hand then
      -- Noted messages the hand's expiry put in the inbox: their attempts count there.
      update bucketq.inbox i
         set attempts = i.attempts + (select count(*) from unnest(v_counted) u(id) where u.id = i.msg_id)::int
       where i.group_id = g.group_id and i.msg_id = any(v_counted);
    end if;
    -- The last message those attempts had: the new position passes it.
    select m.xid, m.ord, m.id into v_last from bucketq.message m
     where m.topic_id = g.topic_id and m.id = any(v_counted || c.msg_ids) and m.bucket = c.bucket
       and m.xid is not null and not pg_visible_in_snapshot(m.xid, d.lo)
     order by m.ord desc limit 1;
    if v_last.id is not null then
      if not pg_visible_in_snapshot(v_last.xid, d.hi) then
        -- The batch had opened a new window; any later snapshot holds all of it (what
        -- else it passes goes to the inbox too, which loses nothing). The notes may
        -- span both windows: a first batch read the rest of the checkpoint's window, a
        -- second (whose claim had put the first's messages back, then rolled back with
        -- them) the next one. The rest of the checkpoint's window goes to the inbox as
        -- well: the new checkpoint starts past it (before, it was passed over, lost).
        select array_agg(w.id) into v_old
          from bucketq._log_window(g.topic_id, c.bucket, d.lo, d.lo_floor, d.hi, d.hi_ceil, d.early_ids, d.pos_ord, null, g.log_from) w
         where g.start_time is null or w.sent_at >= g.start_time;
        s := bucketq._log_snapshot();
        v_lo := d.hi; v_lo_floor := d.hi_floor; v_hi := s.snap; v_hi_floor := s.floor; v_hi_ceil := s.ceil;
        v_early := bucketq._log_open(g.topic_id, c.bucket, v_lo, v_lo_floor, v_hi, g.log_from);
        v_pos_ord := 0; v_pos_id := 0;
      end if;
      if v_last.ord > v_pos_ord then
        select array_agg(w.id) into v_ids
          from bucketq._log_window(g.topic_id, c.bucket, v_lo, v_lo_floor, v_hi, v_hi_ceil, v_early, v_pos_ord, null, g.log_from) w
         where w.ord <= v_last.ord and (g.start_time is null or w.sent_at >= g.start_time);
        v_ids := coalesce(v_old, '{}') || coalesce(v_ids, '{}');
        perform bucketq._log_materialize(g, v_ids, v_counted, true, nextval('bucketq.lease_token_seq'),
                                         p_now, c.consumer_id, c.epoch, p_now);
        -- Spent: dead-lettered as _settle_attempts does for the inbox's messages.
        select array_agg(i.msg_id) into v_spent from bucketq.inbox i
         where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.attempts >= g.max_attempts;
        if v_spent is not null then
          perform bucketq._dead_letter(g, v_spent,
            array_fill(format('its transaction ended without committing in each of %s attempts (last held by consumer %s: crash, lost connection or timeout)',
                              g.max_attempts, c.consumer_id),
                       array[cardinality(v_spent)]));
        end if;
        v_pos_ord := v_last.ord; v_pos_id := v_last.id;
      end if;
    end if;
  end if;
  insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, early_ids, pos_ord, pos_id, created_at)
  values (c.group_id, c.bucket, 1, v_lo, v_lo_floor, v_hi, v_hi_floor, v_hi_ceil, v_early, v_pos_ord, v_pos_id, p_now)
  returning * into d;
  return d;
end $$;
