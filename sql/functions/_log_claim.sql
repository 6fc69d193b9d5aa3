-- The log path of claim and claim_locked: up to p_room messages from the owned buckets'
-- logs, past each bucket's checkpoint. A bucket is read by one batch at a time: its
-- cursor row is locked (SKIP LOCKED: another claimer takes other buckets) and a bucket
-- whose latest progress row is a live batch is passed over. Buckets are visited from a
-- random one on, so that small claims share out the buckets. p_token NULL: a locked
-- claim (the cursor row stays locked until the caller's transaction ends); otherwise a
-- lease under p_token until p_until. Writes one progress row per bucket read (none for
-- a bucket with nothing new) and inbox rows only for messages that must wait.
create or replace function bucketq._log_claim(
  g bucketq.consumer_group, p_consumer text, p_buckets int[], p_epochs bigint[],
  p_room int, p_max_per_key int, p_now timestamptz, p_token bigint, p_until timestamptz)
returns table (msg_id bigint, bucket int, key text, key_id bigint, key_seq bigint, payload jsonb,
               headers jsonb, sent_at timestamptz, epoch bigint)
language plpgsql as $$
declare
  v_room int := p_room;
  v_count int := coalesce(cardinality(p_buckets), 0);
  v_start int;
  v_busy int[];
  v_busy_epochs bigint[];
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
  v_fetched int;
  v_passed int;
  v_skipped_keys bigint[];
  v_handed bigint[];
  v_waits bigint[];
  v_delays bigint[];
begin
  if v_count = 0 then
    return;
  end if;
  -- Which buckets have anything to do, in one statement: a batch that is over, the
  -- rest of the window, or anything committed since the window's snapshot (an index
  -- probe each). Idle buckets cost nothing more.
  select array_agg(x.bucket), array_agg(x.epoch) into v_busy, v_busy_epochs
    from unnest(p_buckets, p_epochs) as x(bucket, epoch)
    cross join lateral (select p.* from bucketq.progress p
                         where p.group_id = g.group_id and p.bucket = x.bucket
                         order by p.seq desc limit 1) lp
   where case when lp.kind <> 1 then not bucketq._log_batch_live(lp, x.epoch, p_now)
              else exists (select 1 from bucketq._log_window(g.topic_id, lp.bucket, lp.lo, lp.lo_floor, lp.hi, lp.hi_ceil,
                                                              lp.early_ids, lp.pos_ord) w)
                   or exists (select 1 from bucketq.message m
                               where m.topic_id = g.topic_id and m.bucket = lp.bucket
                                 and m.xid >= pg_snapshot_xmax(lp.hi))
                   or exists (select 1 from bucketq.message m
                               where m.topic_id = g.topic_id and m.bucket = lp.bucket
                                 and m.xid = any(array(select pg_snapshot_xip(lp.hi)))
                                 and not pg_visible_in_snapshot(m.xid, lp.hi))
         end;
  v_count := coalesce(cardinality(v_busy), 0);
  if v_count = 0 then
    return;
  end if;
  v_start := floor(random() * v_count)::int;
  for j in 0 .. v_count - 1 loop
    exit when v_room <= 0;
    v_b := v_busy[(v_start + j) % v_count + 1];
    v_e := v_busy_epochs[(v_start + j) % v_count + 1];
    -- A batch in flight: pass by without touching the cursor row.
    select * into c from bucketq.progress p where p.group_id = g.group_id and p.bucket = v_b order by p.seq desc limit 1;
    continue when c.group_id is null or (c.kind <> 1 and bucketq._log_batch_live(c, v_e, p_now));
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = v_b for update skip locked;
    continue when not found;
    select * into c from bucketq.progress p where p.group_id = g.group_id and p.bucket = v_b order by p.seq desc limit 1;
    if c.kind <> 1 then
      continue when bucketq._log_batch_live(c, v_e, p_now);
      c := bucketq._log_expire(g, c, p_now);
    end if;

    v_lo := c.lo; v_lo_floor := c.lo_floor;
    v_hi := c.hi; v_hi_floor := c.hi_floor; v_hi_ceil := c.hi_ceil;
    v_early := c.early_ids;
    v_pos := c.pos_ord;
    for v_window in 1 .. 2 loop
      -- A window used up (the usual case after an ack): one probe instead of a chunk.
      if v_window = 1 and not exists (select 1 from bucketq._log_window(g.topic_id, v_b, v_lo, v_lo_floor, v_hi, v_hi_ceil,
                                                                        v_early, v_pos)) then
        v_fetched := 0;
      else
        select array_agg(x.id order by x.n), array_agg(x.ord order by x.n), array_agg(x.decision order by x.n),
               count(*)::int, count(*) filter (where x.decision <> 'x')::int,
               array_agg(distinct x.key_id) filter (where x.decision = 's' and x.key_id is not null),
               array_agg(x.key order by x.n), array_agg(x.key_id order by x.n), array_agg(x.key_seq order by x.n),
               array_agg(x.payload order by x.n), array_agg(x.headers order by x.n), array_agg(x.sent_at order by x.n)
          into v_ids, v_ords, v_dec, v_fetched, v_passed, v_skipped_keys,
               v_keys, v_key_ids, v_key_seqs, v_payloads, v_headers, v_sent_ats
          from bucketq._log_chunk(g, v_b, v_lo, v_lo_floor, v_hi, v_hi_ceil, v_early, v_pos, v_room, p_max_per_key, p_now) x;
      end if;
      exit when v_fetched > 0 or v_window = 2;
      -- This window is used up: the next is what committed since.
      s := bucketq._log_snapshot();
      v_lo := v_hi; v_lo_floor := v_hi_floor;
      v_hi := s.snap; v_hi_floor := s.floor; v_hi_ceil := s.ceil;
      v_early := bucketq._log_open(g.topic_id, v_b, v_lo, v_lo_floor, v_hi);
      v_pos := 0;
    end loop;
    -- Nothing new, or the first message must not go now ('x' only ever ends a chunk).
    continue when v_passed = 0;

    select array_agg(u.id) filter (where u.dec = 'h'), array_agg(u.id) filter (where u.dec = 'w'),
           array_agg(u.id) filter (where u.dec = 'd')
      into v_handed, v_waits, v_delays
      from unnest(v_ids, v_dec) as u(id, dec);
    if v_waits is not null then
      perform bucketq._log_materialize(g, v_waits, '{}', false, null, null, null, null, p_now, true);
    end if;
    if v_delays is not null then
      perform bucketq._log_materialize(g, v_delays, '{}', false, null, null, null, null, p_now);
    end if;

    insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, early_ids, pos_ord, pos_id,
                                  msg_ids, lease_token, leased_until, xact, consumer_id, epoch, created_at)
    values (g.group_id, v_b, case when v_handed is null then 1 else 2 end, v_lo, v_lo_floor, v_hi, v_hi_floor, v_hi_ceil, v_early,
            -- The chunk read the rest of the window and passed all of it: the position
            -- is the window's end (every message of it has ord <= hi_ceil), which lets
            -- the next claims skip the window without reading the log (_log_window).
            case when v_fetched < v_room and v_passed = v_fetched then greatest(v_hi_ceil, v_ords[v_passed])
                 else v_ords[v_passed] end,
            v_ids[v_passed], coalesce(v_handed, '{}'),
            case when v_handed is not null then p_token end,
            case when v_handed is not null then p_until end,
            case when v_handed is not null and p_token is null then pg_current_xact_id() end,
            case when v_handed is not null then p_consumer end,
            case when v_handed is not null then v_e end,
            p_now);

    if v_skipped_keys is not null then
      -- A message of these keys sent after the group's start may wait for the one skipped.
      perform bucketq._promote(g.group_id, v_skipped_keys, p_now);
    end if;

    if v_handed is not null then
      v_room := v_room - cardinality(v_handed);
      -- The chunk read the rows already: no second visit to the log.
      return query
      select u.id, v_b, u.key, u.key_id, u.key_seq, u.payload, u.headers, u.sent_at, v_e
        from unnest(v_ids, v_dec, v_keys, v_key_ids, v_key_seqs, v_payloads, v_headers, v_sent_ats)
             with ordinality as u(id, dec, key, key_id, key_seq, payload, headers, sent_at, n)
       where u.dec = 'h'
       order by u.n;
    end if;
  end loop;
end $$;
