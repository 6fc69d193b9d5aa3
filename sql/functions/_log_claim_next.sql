-- The log path of claim and claim_locked for buckets in the usual state: 'n' from
-- _log_busy (the window is used up and something committed since; most buckets after an
-- ack). One statement locks each one's cursor row as it reaches it (SKIP LOCKED: another
-- claim has it), opens its next window as _log_open does, reads it as _log_window does,
-- decides it as _log_claim's plain chunk and writes its hand row; the LIMIT stops the
-- reading, and the locking, at p_room messages. _log_claim took some five
-- statements a bucket, and their set-up was most of the cost: a claim end to end visits
-- about six buckets (docs/design/log-cursor.md, thirty-eighth pass).
--
-- Returns the messages handed out (rows, in bucket order then ord) and the buckets left
-- for _log_claim (rest, with their epochs, progress seqs and states; the state NULL for
-- one this statement found otherwise): those not in state 'n', one another claim wrote
-- a batch to since _log_busy looked (_progress_newer, with a snapshot of its own after
-- the lock: even a batch committed after this statement's snapshot is seen), and one
-- whose window must not go as it is (a start time or not_before to honour, a key twice
-- past max_per_key, a key waiting in the inbox). p_token NULL: a locked claim (the
-- cursor rows stay locked until the caller's transaction ends, the hand rows record
-- the transaction); otherwise a lease under p_token until p_until.
create or replace function bucketq._log_claim_next(
  g bucketq.consumer_group, p_consumer text, p_buckets int[], p_epochs bigint[], p_seqs bigint[], p_states "char"[],
  p_room int, p_max_per_key int, p_now timestamptz, p_token bigint, p_until timestamptz,
  out rows bucketq.message[], out rest int[], out rest_epochs bigint[], out rest_seqs bigint[], out rest_states "char"[])
language plpgsql as $$
declare
  v_set int[];
  v_set_epochs bigint[];
  v_set_seqs bigint[];
  v_room int;
  v_n int;
  v_start int;
  v_floor bigint;
  v_prefix boolean;
begin
  select array_agg(x.bucket order by x.i) filter (where x.state = 'n'),
         array_agg(x.epoch order by x.i) filter (where x.state = 'n'),
         array_agg(x.seq order by x.i) filter (where x.state = 'n'),
         array_agg(x.bucket order by x.i) filter (where x.state <> 'n'),
         array_agg(x.epoch order by x.i) filter (where x.state <> 'n'),
         array_agg(x.seq order by x.i) filter (where x.state <> 'n'),
         array_agg(x.state order by x.i) filter (where x.state <> 'n')
    into v_set, v_set_epochs, v_set_seqs, rest, rest_epochs, rest_seqs, rest_states
    from unnest(p_buckets, p_epochs, p_seqs, p_states) with ordinality as x(bucket, epoch, seq, state, i);
  if v_set is null then
    return;
  end if;
  -- When other buckets are busy too (windows read in part: a backlog), this claim
  -- leaves them all to _log_claim in the proportion of those others, so that neither
  -- kind waits for the other to run dry. (A share of the room each spread every full
  -- batch of a drain over every bucket with a new window, and each bucket a batch
  -- spans costs its ack, record_attempt and settling a few statements more.)
  if rest is not null and random() * (cardinality(v_set) + cardinality(rest)) >= cardinality(v_set) then
    rest := p_buckets; rest_epochs := p_epochs; rest_seqs := p_seqs; rest_states := p_states;
    return;
  end if;
  v_room := p_room;
  -- From a random one on, as _log_claim visits them, so that small claims share out the
  -- buckets.
  v_n := cardinality(v_set);
  v_start := floor(random() * v_n)::int;
  select array_agg(x.bucket order by (x.i - 1 + v_n - v_start) % v_n),
         array_agg(x.epoch order by (x.i - 1 + v_n - v_start) % v_n),
         array_agg(x.seq order by (x.i - 1 + v_n - v_start) % v_n)
    into v_set, v_set_epochs, v_set_seqs
    from unnest(v_set, v_set_epochs, v_set_seqs) with ordinality as x(bucket, epoch, seq, i);
  -- The ord sequence before the statement's snapshot, as _log_snapshot's floor.
  v_floor := coalesce(pg_sequence_last_value('bucketq.message_ord_seq'), 0);
  with sn as materialized (
    select pg_current_snapshot() as snap, coalesce(pg_sequence_last_value('bucketq.message_ord_seq'), 0) as ceil),
  m as materialized (
    -- Bucket after bucket: its cursor row locked as it is reached (SKIP LOCKED:
    -- another claim of ours has it), then its next window read in ord order; the
    -- LIMIT stops the reading, and the locking, at the room. The window opens as
    -- _log_open opens it (its early messages: senders in progress at the last
    -- window's snapshot that committed since; end to end, most windows have some).
    -- A bucket no longer in the state _log_busy found (another claim wrote a batch
    -- there since, even one that committed after this statement's snapshot:
    -- _progress_newer looks with a snapshot of its own, after the lock) comes as one
    -- row, ok false, for _log_claim. at: the order read in (the cut falls in the
    -- bucket of the last row read); rn: what is read of a window is its beginning
    -- (checked below).
    select b.bucket, b.epoch, b.o, b.seq, coalesce(d.ok, false) as ok, d.lo, d.lo_floor, d.early, x.m, x.rn,
           row_number() over () as at
      from unnest(v_set, v_set_epochs, v_set_seqs) with ordinality as b(bucket, epoch, seq, o)
      cross join lateral (select 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = b.bucket
                             for update skip locked) k
      cross join sn
      left join lateral (
        -- (kind = 1 here, not in the WHERE: there the partial index of the done rows
        -- looked as good as the primary key to a plan that took group_id for unique.)
        select p.kind = 1 and not bucketq._progress_newer(g.group_id, b.bucket, b.seq) as ok,
               p.hi as lo, p.hi_floor as lo_floor,
               -- The window's early messages: _log_open's two probes (a change to one
               -- copy is a change to all). ORDER BY xid: on (bucket, xid) whatever the
               -- statistics say, as in _log_busy.
               case when p.hi_floor > 0 then array(
                 (select m.id from bucketq.message m
                   where m.topic_id = g.topic_id and m.bucket = b.bucket and m.sent_at >= g.log_from
                     and m.xid >= pg_snapshot_xmax(p.hi) and m.xid < pg_snapshot_xmax(sn.snap)
                     and m.ord + 0 <= p.hi_floor
                     and pg_visible_in_snapshot(m.xid, sn.snap)
                   order by m.xid)
                 union all
                 select m.id from pg_snapshot_xip(p.hi) as t(xid)
                  cross join lateral (
                    select m.id from bucketq.message m
                     where m.topic_id = g.topic_id and m.bucket = b.bucket and m.xid = t.xid
                       and m.sent_at >= g.log_from and m.ord + 0 <= p.hi_floor
                       and pg_visible_in_snapshot(m.xid, sn.snap)
                     order by m.xid
                    offset 0) m) else '{}' end as early
          from bucketq.progress p
         where p.group_id = g.group_id and p.bucket = b.bucket and p.seq = b.seq
        offset 0) d on true
      cross join lateral (
        -- The window, as _log_window reads it: the ords taken since the last window's
        -- floor, and its early messages by id.
        (select row(w.*)::bucketq.message as m, row_number() over (order by w.ord) as rn
           from ((select m.* from bucketq.message m
                   where d.ok and d.lo_floor < sn.ceil
                     and m.topic_id = g.topic_id and m.bucket = b.bucket and m.sent_at >= g.log_from
                     and m.ord > d.lo_floor and m.ord <= sn.ceil
                     and pg_visible_in_snapshot(m.xid, sn.snap) and not pg_visible_in_snapshot(m.xid, d.lo)
                   order by m.ord limit v_room)
                 union all
                 (select m.* from bucketq.message m
                   where d.ok and cardinality(d.early) > 0
                     and m.topic_id = g.topic_id and m.id = any(d.early) and m.sent_at >= g.log_from
                   order by m.ord limit v_room)) w
          order by w.ord limit v_room)
        union all
        select null::bucketq.message, 0 where d.ok is not true) x
     limit v_room),
  r as (
    -- Each window decided as _log_claim's plain chunk. Read to its end unless the cut
    -- may have fallen in it: the room is full and its row was the last read.
    select x.bucket, x.epoch, x.o, x.seq, x.ok, x.lo_floor, x.early, (array_agg(x.lo))[1] as lo,
           array_agg((x.m).id order by x.rn) as ids, max((x.m).ord) as last_ord, count(*)::int as n,
           max(x.rn) = count(*) as prefix,
           x.ok
           and not coalesce(bool_or((x.m).not_before > p_now or (x.m).sent_at < g.start_time), false)
           and (v_room <= p_max_per_key or count(distinct (x.m).key_id) = count((x.m).key_id))
           and not exists (select 1 from bucketq.inbox y where y.group_id = g.group_id and y.key_id is not null) as plain,
           not bool_or(x.at = v_room) as whole
      from m x
     group by x.bucket, x.epoch, x.o, x.seq, x.ok, x.lo_floor, x.early),
  ins as (
    -- Their 'hand' rows, as _log_claim writes them.
    insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, early_ids, pos_ord, pos_id,
                                  msg_ids, lease_token, leased_until, xact, consumer_id, epoch, created_at)
    select g.group_id, r.bucket, 2, r.lo, r.lo_floor, sn.snap, v_floor, sn.ceil, r.early,
           case when r.whole then greatest(sn.ceil, r.last_ord) else r.last_ord end,
           r.ids[r.n], r.ids, p_token, p_until, case when p_token is null then pg_current_xact_id() end, p_consumer, r.epoch, p_now
      from r cross join sn
     where r.plain and r.prefix
    returning 1),
  fb as (
    -- To _log_claim: buckets not in the state found after all, or whose window must not
    -- go as it is, and those the reading did not reach (the room was full; rows of
    -- windows that do not go took some of it), which _log_claim may still fill.
    select r.bucket, r.epoch, r.seq, r.o from r where not r.plain
    union all
    select b.bucket, b.epoch, b.seq, b.o
      from unnest(v_set, v_set_epochs, v_set_seqs) with ordinality as b(bucket, epoch, seq, o)
     where b.o > (select y.o from m y where y.at = v_room))
  select (select array_agg(x.m order by r.o, x.rn) from r join m x on x.bucket = r.bucket where r.plain),
         (select bool_and(r.prefix) from r where r.ok),
         (select array_agg(fb.bucket order by fb.o) from fb),
         (select array_agg(fb.epoch order by fb.o) from fb),
         (select array_agg(fb.seq order by fb.o) from fb)
    into rows, v_prefix, v_set, v_set_epochs, v_set_seqs;
  if not v_prefix then
    raise exception 'claim: internal error: a window of group % was cut other than at its end (buckets %)', g.name, v_set
      using errcode = 'XX000', detail = 'Nothing was claimed.',
            hint = 'Report it: the plan of the several-bucket claim did not read each bucket in order.';
  end if;
  if v_set is not null then
    rest := coalesce(rest, '{}') || v_set;
    rest_epochs := coalesce(rest_epochs, '{}') || v_set_epochs;
    rest_seqs := coalesce(rest_seqs, '{}') || v_set_seqs;
    rest_states := coalesce(rest_states, '{}') || array_fill(null::"char", array[cardinality(v_set)]);
  end if;
end $$;

comment on function bucketq._log_claim_next(bucketq.consumer_group, text, int[], bigint[], bigint[], "char"[], int, int, timestamptz, bigint, timestamptz) is
'Internal (claims): the next windows of the buckets _log_busy found used up with something new, in one statement; returns the messages handed out and the buckets left for _log_claim.';
