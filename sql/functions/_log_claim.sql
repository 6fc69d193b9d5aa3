-- The log path of claim and claim_locked: up to p_room messages from the buckets'
-- logs, past each bucket's checkpoint. p_buckets are the owned buckets that have
-- anything to do, as _log_busy found them (p_seqs, p_states: the progress row it looked
-- at and what it found there). A bucket is read by one batch at a time: its cursor row
-- is locked (SKIP LOCKED: another claimer takes other buckets) and a bucket whose latest
-- progress row is a live batch is passed over. Buckets are visited from a random one on,
-- so that small claims share out the buckets. p_token NULL: a locked claim (the cursor
-- row stays locked until the caller's transaction ends); otherwise a lease under p_token
-- until p_until. Writes one progress row per bucket read (none for a bucket with nothing
-- new) and inbox rows only for messages that must wait.
drop function if exists bucketq._log_claim(bucketq.consumer_group, text, int[], bigint[], int, int, timestamptz, bigint, timestamptz);
create or replace function bucketq._log_claim(
  g bucketq.consumer_group, p_consumer text, p_buckets int[], p_epochs bigint[], p_seqs bigint[], p_states "char"[],
  p_room int, p_max_per_key int, p_now timestamptz, p_token bigint, p_until timestamptz)
returns table (msg_id bigint, bucket int, key text, key_id bigint, key_seq bigint, payload jsonb,
               headers jsonb, sent_at timestamptz, epoch bigint)
language plpgsql as $$
declare
  v_room int := p_room;
  v_count int := coalesce(cardinality(p_buckets), 0);
  v_start int;
  v_i int;
  v_state "char";
  v_b int;
  v_e bigint;
  c bucketq.progress;
  s record;
  v_lo pg_snapshot;
  v_lo_floor bigint;
  v_hi pg_snapshot;
  v_hi_floor bigint;
  v_hi_ceil bigint;
  v_early bigint[];
  v_pos bigint;
  v_ids bigint[];
  v_ords bigint[];
  v_dec "char"[];
  v_keys text[];
  v_key_ids bigint[];
  v_key_seqs bigint[];
  v_payloads jsonb[];
  v_headers jsonb[];
  v_sent_ats timestamptz[];
  v_rows bucketq.message[];
  v_plain boolean;
  v_fetched int;
  v_passed int;
  v_last_ord bigint;
  v_last_id bigint;
  v_skipped_keys bigint[];
  v_handed bigint[];
  v_waits bigint[];
  v_delays bigint[];
  v_progress bucketq.progress[] := '{}';
begin
  if v_count = 0 then
    return;
  end if;
  v_start := floor(random() * v_count)::int;
  for j in 0 .. v_count - 1 loop
    exit when v_room <= 0;
    v_i := (v_start + j) % v_count + 1;
    v_b := p_buckets[v_i];
    v_e := p_epochs[v_i];
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = v_b for update skip locked;
    continue when not found;
    -- The latest row, from the one _log_busy found on (the latest of all when there is
    -- one: a bounded read of a few index entries, see _log_busy), else among all.
    select * into c from bucketq.progress p
     where p.group_id = g.group_id and p.bucket = v_b and p.seq >= p_seqs[v_i]
     order by p.seq desc limit 1;
    if c.group_id is null then
      select * into c from bucketq.progress p where p.group_id = g.group_id and p.bucket = v_b order by p.seq desc limit 1;
    end if;
    continue when c.group_id is null;
    -- What _log_busy found still holds if the row is the one it looked at.
    v_state := case when c.seq = p_seqs[v_i] then p_states[v_i] end;
    if c.kind <> 1 then
      continue when bucketq._log_batch_live(c, v_e, p_now);
      c := bucketq._log_expire(g, c, p_now);
      v_state := null;
    end if;

    v_lo := c.lo; v_lo_floor := c.lo_floor;
    v_hi := c.hi; v_hi_floor := c.hi_floor; v_hi_ceil := c.hi_ceil;
    v_early := c.early_ids;
    v_pos := c.pos_ord;
    for v_window in 1 .. 2 loop
      v_fetched := 0; v_passed := 0; v_plain := false;
      -- A window used up (the usual case after an ack), as _log_busy found: no read.
      if v_window = 2 or v_state is distinct from 'n' then
        -- Usually every message of the chunk goes now: the group has no keyed row in
        -- the inbox (nothing failed, nothing waits), no start time to skip by, no
        -- not_before ahead, and no run longer than max_per_key. Then a plain read of
        -- the window is the whole chunk: one statement, one sort. Its decisions
        -- (_log_chunk: window functions, then a dozen ordered aggregates of them) cost
        -- more than the read, half a locked claim of 250 messages. Otherwise the chunk
        -- is read again with its decisions.
        if cardinality(v_early) = 0 then
          -- (The usual window, with no early messages: _log_window's first part alone.
          -- The plan of the whole union cost twice as much to set up as this one.)
          select array_agg(x.m order by (x.m).ord), array_agg((x.m).id order by (x.m).ord), count(*)::int,
                 count(*) > 0
                 and not coalesce(bool_or((x.m).not_before > p_now or (x.m).sent_at < g.start_time), false)
                 and (v_room <= p_max_per_key or count(distinct (x.m).key_id) = count((x.m).key_id))
                 and not exists (select 1 from bucketq.inbox y where y.group_id = g.group_id and y.key_id is not null)
            into v_rows, v_handed, v_fetched, v_plain
            -- (row(m.*)::bucketq.message: a topic's copy reads its own table, whose row type
            -- is another; the array is of bucketq.message.)
            from (select row(m.*)::bucketq.message as m from bucketq.message m
                   where greatest(v_pos, v_lo_floor) < v_hi_ceil
                     and m.topic_id = g.topic_id and m.bucket = v_b and m.sent_at >= g.log_from
                     and m.ord > greatest(v_pos, v_lo_floor) and m.ord <= v_hi_ceil
                     and pg_visible_in_snapshot(m.xid, v_hi) and not pg_visible_in_snapshot(m.xid, v_lo)
                   order by m.ord limit v_room) x;
        else
          select array_agg(x.m order by (x.m).ord), array_agg((x.m).id order by (x.m).ord), count(*)::int,
                 count(*) > 0
                 and not coalesce(bool_or((x.m).not_before > p_now or (x.m).sent_at < g.start_time), false)
                 and (v_room <= p_max_per_key or count(distinct (x.m).key_id) = count((x.m).key_id))
                 and not exists (select 1 from bucketq.inbox y where y.group_id = g.group_id and y.key_id is not null)
            into v_rows, v_handed, v_fetched, v_plain
            from (select w as m from bucketq._log_window(g.topic_id, v_b, v_lo, v_lo_floor, v_hi, v_hi_ceil, v_early,
                                                         v_pos, v_room, g.log_from) w
                   order by w.ord limit v_room) x;
        end if;
        if v_plain then
          v_passed := v_fetched;
          v_last_ord := (v_rows[v_fetched]).ord;
          v_last_id := (v_rows[v_fetched]).id;
          v_skipped_keys := null; v_waits := null; v_delays := null;
        elsif v_fetched > 0 then
          select array_agg(x.id order by x.n), array_agg(x.ord order by x.n), array_agg(x.decision order by x.n),
                 count(*)::int, count(*) filter (where x.decision <> 'x')::int,
                 array_agg(distinct x.key_id) filter (where x.decision = 's' and x.key_id is not null),
                 array_agg(x.key order by x.n), array_agg(x.key_id order by x.n), array_agg(x.key_seq order by x.n),
                 array_agg(x.payload order by x.n), array_agg(x.headers order by x.n), array_agg(x.sent_at order by x.n),
                 array_agg(x.id) filter (where x.decision = 'h'), array_agg(x.id) filter (where x.decision = 'w'),
                 array_agg(x.id) filter (where x.decision = 'd')
            into v_ids, v_ords, v_dec, v_fetched, v_passed, v_skipped_keys,
                 v_keys, v_key_ids, v_key_seqs, v_payloads, v_headers, v_sent_ats,
                 v_handed, v_waits, v_delays
            from bucketq._log_chunk(g, v_b, v_lo, v_lo_floor, v_hi, v_hi_ceil, v_early, v_pos, v_room, p_max_per_key, p_now) x;
          v_last_ord := v_ords[v_passed];
          v_last_id := v_ids[v_passed];
        end if;
      end if;
      exit when v_fetched > 0 or v_window = 2;
      -- This window is used up: the next is what committed since.
      s := bucketq._log_snapshot();
      v_lo := v_hi; v_lo_floor := v_hi_floor;
      v_hi := s.snap; v_hi_floor := s.floor; v_hi_ceil := s.ceil;
      v_early := bucketq._log_open(g.topic_id, v_b, v_lo, v_lo_floor, v_hi, g.log_from);
      v_pos := 0;
    end loop;
    -- Nothing new, or the first message must not go now ('x' only ever ends a chunk).
    continue when v_passed = 0;

    if v_waits is not null then
      perform bucketq._log_materialize(g, v_waits, '{}', false, null, null, null, null, p_now, true);
    end if;
    if v_delays is not null then
      perform bucketq._log_materialize(g, v_delays, '{}', false, null, null, null, null, p_now);
    end if;

    -- Its progress row, written with the others at the end (_progress_append). In the
    -- table's column order, seq NULL.
    v_progress := v_progress || row(
      g.group_id, v_b, null, case when v_handed is null then 1 else 2 end, v_lo, v_lo_floor, v_hi, v_hi_floor, v_hi_ceil, v_early,
      -- The chunk read the rest of the window and passed all of it: the position
      -- is the window's end (every message of it has ord <= hi_ceil), which lets
      -- the next claims skip the window without reading the log (_log_window).
      case when v_fetched < v_room and v_passed = v_fetched then greatest(v_hi_ceil, v_last_ord)
           else v_last_ord end,
      v_last_id, coalesce(v_handed, '{}'),
      case when v_handed is not null then p_token end,
      case when v_handed is not null then p_until end,
      case when v_handed is not null and p_token is null then pg_current_xact_id() end,
      case when v_handed is not null then p_consumer end,
      case when v_handed is not null then v_e end,
      p_now)::bucketq.progress;

    if v_skipped_keys is not null then
      -- A message of these keys sent after the group's start may wait for the one skipped.
      -- (_promote must see this batch first: it leaves alone a key whose earlier
      -- message the bucket's latest row hands out.)
      perform bucketq._progress_append(v_progress);
      v_progress := '{}';
      perform bucketq._promote(g.group_id, v_skipped_keys, p_now);
    end if;

    if v_handed is not null then
      v_room := v_room - cardinality(v_handed);
      -- The chunk read the rows already: no second visit to the log.
      if v_plain then
        return query
        select u.id, v_b, u.key, u.key_id, u.key_seq, u.payload, u.headers, u.sent_at, v_e
          from unnest(v_rows) with ordinality as u
         order by u.ordinality;
        continue;
      end if;
      return query
      select u.id, v_b, u.key, u.key_id, u.key_seq, u.payload, u.headers, u.sent_at, v_e
        from unnest(v_ids, v_dec, v_keys, v_key_ids, v_key_seqs, v_payloads, v_headers, v_sent_ats)
             with ordinality as u(id, dec, key, key_id, key_seq, payload, headers, sent_at, n)
       where u.dec = 'h'
       order by u.n;
    end if;
  end loop;

  if cardinality(v_progress) > 0 then
    perform bucketq._progress_append(v_progress);
  end if;
end $$;
