-- The body of bucketq.claim, after its group was found (g; bucketq._group checked the
-- caller's access), which calls it (the generic path) or the topic's own copy of it
-- (bucketq_t<topic_id>._claim, see _topic_copies.sql). It runs inside bucketq.claim: that
-- function's owner, search_path and planner settings apply.
create or replace function bucketq._claim(
  g bucketq.consumer_group,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  lease_timeout interval default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, lease_token bigint, sent_at timestamptz, leased_until timestamptz, epoch bigint)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now timestamptz;
  v_until timestamptz;
  v_token bigint;
  v_tails bigint[];
  v_exhausted bigint[];
  v_timed bigint[];
  v_ready bigint[];
  v_run bigint[];
  v_ids bigint[];
  v_room int;
  v_owned int[];
  v_busy int[];
  v_scan int[];
  v_scan_epochs bigint[];
  v_moved timestamptz[];
  v_noted boolean;
  v_seen int[];
  v_snap pg_snapshot;
  v_recent bigint;
  v_busy_epochs bigint[];
  v_busy_seqs bigint[];
  v_busy_states "char"[];
  v_over int[];
  v_over_epochs bigint[];
  v_epochs bigint[];
  v_got int := 0;
  v_due boolean;
  v_inbox_ready boolean;
  v_floor bigint;
  v_fast boolean;
  v_open boolean;
  v_rows bucketq.message[];
  v_n int;
  v_locked boolean := false;
  v_rest int[];
  v_rest_epochs bigint[];
  v_rest_seqs bigint[];
  v_rest_states "char"[];
begin
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('claim', g);
  end if;
  -- A claim of one bucket (a wake-up's) by a live consumer that this role joined and
  -- that owns the bucket, in one statement that also takes the bucket's cursor (as the
  -- one-bucket path below does): what _check_consumer, the owned buckets' lookup and the
  -- cursor's lock find in three statements and two functions. Anything else (another
  -- role acting as the consumer, an expired session, a bucket not its own, a cursor
  -- locked by another claim) finds no row and goes the long way, which says what is
  -- wrong.
  v_now := bucketq._now();
  if cardinality(buckets) = 1 then
    select array[o.bucket], array[o.epoch], array[o.moved_at] into v_owned, v_epochs, v_moved
      from bucketq._consumer_joined_by_caller(g.group_id, _claim.consumer_id) c
      join bucketq.bucket_owner o on o.group_id = c.group_id and o.owner = c.consumer_id and o.bucket = buckets[1]
      join bucketq.cursor k on k.group_id = c.group_id and k.bucket = o.bucket
     where c.heartbeat_at > v_now - g.session_timeout
       for update of k skip locked;
    v_locked := found;
  end if;
  if not v_locked then
    perform bucketq._check_consumer('claim', g, consumer_id);
  end if;
  if max_messages is null or max_messages < 1 or max_messages > 10000 then
    raise exception 'claim: invalid max_messages % for group %', coalesce(max_messages::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'max_messages is 1 to 10000.';
  end if;
  if max_per_key is null or max_per_key < 1 or max_per_key > 10000 then
    raise exception 'claim: invalid max_per_key % for group %', coalesce(max_per_key::text, 'NULL'), g.name
      using errcode = 'BQ005',
            hint = 'max_per_key is 1 (only the head of each key) to 10000 (a run of up to that many consecutive messages of a key, to be handled and acked in key_seq order).';
  end if;
  if lease_timeout is not null and (lease_timeout <= interval '0' or lease_timeout > interval '1 day') then
    raise exception 'claim: invalid lease_timeout % for group %', lease_timeout, g.name
      using errcode = 'BQ005', hint = 'lease_timeout is more than 0 and at most 1 day, or NULL for the group''s default.';
  end if;

  v_until := v_now + coalesce(lease_timeout, g.lease_timeout);

  -- Only buckets this consumer owns, under their current epochs.
  -- (A bucket's ownership is live while its owner's heartbeat is: _consumer_now.)
  if not v_locked then
    select array_agg(o.bucket), array_agg(o.epoch), array_agg(o.moved_at) into v_owned, v_epochs, v_moved
      from bucketq._consumer_now c
      join bucketq.bucket_owner o on o.group_id = c.group_id and o.owner = c.consumer_id
     where c.group_id = g.group_id and c.consumer_id = _claim.consumer_id
       and c.heartbeat_at > v_now - g.session_timeout
       and (buckets is null or o.bucket = any(buckets));
  end if;
  -- Buckets named that this consumer does not own may be out of range: then say so.
  if buckets is not null and coalesce(cardinality(v_owned), 0) < cardinality(buckets) then
    perform bucketq._check_buckets('claim', g, buckets);
  end if;
  if v_owned is null then
    if not exists (select 1 from bucketq._consumer_now c
                    where c.group_id = g.group_id and c.consumer_id = _claim.consumer_id
                      and c.heartbeat_at > v_now - g.session_timeout) then
      raise exception 'claim: consumer % is not a live member of group %', _claim.consumer_id, g.name
        using errcode = 'BQ008',
              hint = format('Call bucketq.join(%L, %L) first, then bucketq.heartbeat well within the session timeout (%s).',
                            g.name, _claim.consumer_id, g.session_timeout);
    end if;
    return;  -- a member that owns no bucket (yet): nothing to claim
  end if;

  -- Which buckets' logs have anything to do (_log_busy, one statement). Batches from
  -- them that ended without settling come back first (to the inbox, handed out below).
  -- Of 32 buckets or more, only those not found idle by this session's last claim, and
  -- those sent to since (_log_quiet); what this one finds idle is noted for the next
  -- (_log_quiet_save). Below 32, looking at each costs no more than reading the note. A
  -- claim of some buckets only neither reads nor writes it.
  v_noted := buckets is null and cardinality(v_owned) >= 32;
  if v_noted then
    select q.scan, q.scan_epochs, q.snap into v_scan, v_scan_epochs, v_snap
      from bucketq._log_quiet(g, _claim.consumer_id, v_owned, v_epochs, v_moved, v_now) q;
  else
    v_scan := v_owned;
    v_scan_epochs := v_epochs;
  end if;
  v_token := nextval('bucketq.lease_token_seq');

  -- One bucket (a wake-up names the bucket sent to) in the usual state: its latest
  -- progress row is an acked batch whose window is used up, nothing in the inbox is due
  -- or ready there (and no key waits anywhere), and what committed since goes as it is. Then
  -- three statements do the claim: the cursor's lock, one statement that finds that state
  -- and reads, hands out and records the next window (what _log_busy, the inbox probes
  -- and _log_claim do in some fifteen), and the rows back. Their set-up and the PL/pgSQL
  -- around them were most of a wake-up's claim. In any other state the statement finds no
  -- window (v_open null) and writes nothing, and the claim goes on below as before, the
  -- cursor's lock already ours.
  v_fast := cardinality(v_owned) = 1;
  if v_fast and not v_locked then
    -- (Locked by another claim of ours: the log is passed over below as well, but the
    -- inbox may still have something due there.)
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = v_owned[1] for update skip locked;
    v_fast := found;
  end if;
  if v_fast then
    -- (After the lock: the statement's snapshot sees a batch that committed before we had
    -- it. The ord sequence before that snapshot, as _log_snapshot's floor; after it, inside.)
    v_floor := coalesce(pg_sequence_last_value('bucketq.message_ord_seq'), 0);
    v_recent := coalesce(pg_sequence_last_value('bucketq.progress_seq_seq'), 0) - 64;
    with lp as (
      -- The latest row, bounded first (see _log_busy).
      select (s.r).* from (
        select coalesce(
                 (select p from bucketq.progress p
                   where p.group_id = g.group_id and p.bucket = v_owned[1] and p.seq >= v_recent
                   order by p.seq desc limit 1),
                 (select p from bucketq.progress p
                   where p.group_id = g.group_id and p.bucket = v_owned[1]
                   order by p.seq desc limit 1)) as r
        offset 0) s),
    w as (
      select lp.hi as lo, lp.hi_floor as lo_floor, sn.snap as hi, sn.ceil as hi_ceil
        from lp cross join (select pg_current_snapshot() as snap,
                                   coalesce(pg_sequence_last_value('bucketq.message_ord_seq'), 0) as ceil offset 0) sn
       where lp.kind = 1
         -- nothing of its window past its position ('r' in _log_busy): its early messages
         -- (senders in progress at its snapshot that committed later with an order below
         -- its floor; one wake-up claim in twenty-five found some, and went the long way)
         and not (cardinality(lp.early_ids) > 0
                  and bucketq._log_early_ahead(g.topic_id, lp.early_ids, lp.pos_ord, g.log_from))
         -- and the rest of it
         and not (greatest(lp.pos_ord, lp.lo_floor) < lp.hi_ceil
                  and exists (select 1 from (select m.ord from bucketq.message m
                                              where m.topic_id = g.topic_id and m.bucket = v_owned[1] and m.sent_at >= g.log_from
                                                and m.ord > greatest(lp.pos_ord, lp.lo_floor) and m.ord <= lp.hi_ceil
                                                and pg_visible_in_snapshot(m.xid, lp.hi)
                                                and not pg_visible_in_snapshot(m.xid, lp.lo)
                                              order by m.ord limit 1) x))
         -- nothing in the inbox to hand out here now (as the probes below), and no key
         -- held there (as _log_claim's plain chunk)
         and not exists (select 1 from bucketq.inbox i
                          where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
                            and i.bucket = v_owned[1])
         and not exists (select 1 from bucketq.inbox h
                          where h.group_id = g.group_id and h.state = 0 and h.bucket = v_owned[1])
         and not exists (select 1 from bucketq.inbox y where y.group_id = g.group_id and y.key_id is not null)
         -- no message of the window before committed late: _log_open's two probes, as
         -- subqueries of this statement (a PL/pgSQL call of its own cost more than they;
         -- a change to one copy is a change to both)
         and not (lp.hi_floor > 0
                  and (exists (select 1 from bucketq.message m
                                where m.topic_id = g.topic_id and m.bucket = v_owned[1] and m.sent_at >= g.log_from
                                  and m.xid >= pg_snapshot_xmax(lp.hi) and m.xid < pg_snapshot_xmax(sn.snap)
                                  and m.ord + 0 <= lp.hi_floor
                                  and pg_visible_in_snapshot(m.xid, sn.snap))
                       or exists (select 1 from pg_snapshot_xip(lp.hi) as t(xid)
                                   cross join lateral (
                                     select 1 from bucketq.message m
                                      where m.topic_id = g.topic_id and m.bucket = v_owned[1] and m.xid = t.xid
                                        and m.sent_at >= g.log_from and m.ord + 0 <= lp.hi_floor
                                        and pg_visible_in_snapshot(m.xid, sn.snap)
                                     offset 0) m)))),
    r as (
      -- The next window, read and decided as _log_claim's plain chunk.
      select array_agg(x.m order by (x.m).ord) as rows, array_agg((x.m).id order by (x.m).ord) as ids, count(*)::int as n,
             count(*) > 0
             and not coalesce(bool_or((x.m).not_before > v_now or (x.m).sent_at < g.start_time), false)
             and (max_messages <= max_per_key or count(distinct (x.m).key_id) = count((x.m).key_id)) as plain
        from (select row(m.*)::bucketq.message as m from w cross join lateral (
                select m.* from bucketq.message m
                 where w.lo_floor < w.hi_ceil
                   and m.topic_id = g.topic_id and m.bucket = v_owned[1] and m.sent_at >= g.log_from
                   and m.ord > w.lo_floor and m.ord <= w.hi_ceil
                   and pg_visible_in_snapshot(m.xid, w.hi) and not pg_visible_in_snapshot(m.xid, w.lo)
                 order by m.ord limit max_messages) m) x),
    ins as (
      -- Its 'hand' row, as _log_claim writes it.
      insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, early_ids, pos_ord, pos_id,
                                    msg_ids, lease_token, leased_until, xact, consumer_id, epoch, created_at)
      select g.group_id, v_owned[1], 2, w.lo, w.lo_floor, w.hi, v_floor, w.hi_ceil, '{}',
             case when r.n < max_messages then greatest(w.hi_ceil, (r.rows[r.n]).ord) else (r.rows[r.n]).ord end,
             (r.rows[r.n]).id, r.ids, v_token, v_until, null, _claim.consumer_id, v_epochs[1], v_now
        from w cross join r
       where r.plain
      returning 1)
    select (select true from w), case when r.plain then r.rows end, r.n
      into v_open, v_rows, v_n
      from r;
    if v_open and v_rows is not null then
      return query
      select u.id, v_owned[1], u.key, u.key_seq, u.payload, u.headers, 1, v_token, u.sent_at, v_until, v_epochs[1]
        from unnest(v_rows) as u
       order by min(u.id) over (partition by coalesce(u.key_id, -u.id)), u.key_seq nulls first, u.id;
      return;
    elsif v_open and v_n = 0 then
      return;  -- nothing new here (a sender that has not committed yet)
    end if;
  end if;

  if cardinality(v_scan) > 0 then
    -- (A variable, not the call: a volatile call among its arguments keeps Postgres from
    -- inlining _log_busy.)
    v_recent := coalesce(pg_sequence_last_value('bucketq.progress_seq_seq'), 0) - 64 * cardinality(v_scan);
    select array_agg(b.bucket) filter (where b.state <> 'l'), array_agg(b.epoch) filter (where b.state <> 'l'),
           array_agg(b.seq) filter (where b.state <> 'l'), array_agg(b.state) filter (where b.state <> 'l'),
           array_agg(b.bucket) filter (where b.state = 'o'), array_agg(b.epoch) filter (where b.state = 'o'),
           array_agg(b.bucket)
      into v_busy, v_busy_epochs, v_busy_seqs, v_busy_states, v_over, v_over_epochs, v_seen
      from bucketq._log_busy(g, v_scan, v_scan_epochs, v_now, v_recent) b;
  end if;
  if v_noted then
    perform bucketq._log_quiet_save(g, _claim.consumer_id, v_snap, v_seen, v_now);
  end if;
  if v_over is not null then
    perform bucketq._log_expire_due(g, v_over, v_over_epochs, v_now);
  end if;

  -- Is anything due in these buckets (expired leases, retries, not_before reached), or
  -- ready in the inbox? Usually neither: two index probes in one statement, and the
  -- statements below are skipped.
  select exists (select 1 from bucketq.inbox i
                  where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
                    and i.bucket = any(v_owned)),
         exists (select 1 from bucketq.inbox h
                  where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned))
    into v_due, v_inbox_ready;
  if v_due then
    -- The tails of expired runs wait behind their heads again (their attempt does not
    -- count); the heads are handled below like any expired lease.
    select array_agg(i.msg_id) into v_tails from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state = 1 and i.available_at <= v_now
         and i.bucket = any(v_owned) and i.key_id is not null
         and exists (select 1 from bucketq.inbox y
                      where y.group_id = g.group_id and y.key_id = i.key_id and y.key_seq < i.key_seq)
       order by i.key_id, i.msg_id
       for update of i skip locked) i;
    if v_tails is not null then
      perform bucketq._unlease(g.group_id, v_tails);
    end if;

    -- Expired leases whose attempts are spent go to the dead letters (a worker that
    -- crashes on a message every time must not hold its key forever).
    select array_agg(i.msg_id) into v_exhausted from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state = 1 and i.available_at <= v_now
         and i.attempts >= g.max_attempts and i.bucket = any(v_owned)
       for update skip locked) i;
    if v_exhausted is not null then
      perform bucketq._dead_letter(g, v_exhausted,
        array_fill(format('lease expired after %s attempts', g.max_attempts), array[cardinality(v_exhausted)]));
    end if;

    -- Rows whose time has come: retries after backoff, not_before reached, expired leases.
    select array_agg(i.msg_id) into v_timed from (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
         and i.bucket = any(v_owned)
       order by i.available_at
       limit max_messages
       for update skip locked) i;
  end if;

  -- Ready keys, oldest head first, each with its run: the head, then the waiting
  -- messages right behind it (for a keyed head on its first attempt), until the batch
  -- is full. Taking whole runs makes fewer keys per batch, so fewer promotions on ack.
  -- Rows are locked as they are read (SKIP LOCKED: concurrent claimers take other
  -- keys) and the LIMIT stops the reading once the batch is full; a message locked
  -- elsewhere or not yet due ends its run there.
  -- (None ready in the inbox: the usual case, the probe above instead of the statement
  -- below, whose plan alone took a tenth of an empty claim to set up.)
  v_room := max_messages - coalesce(cardinality(v_timed), 0);
  if v_due then
    -- (a dead letter above may have made the next message of its key ready)
    v_inbox_ready := exists (select 1 from bucketq.inbox h
                              where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned));
  end if;
  if v_room > 0 and v_inbox_ready then
    select array_agg(v.msg_id order by v.head_id, v.key_seq) filter (where v.msg_id = v.head_id),
           array_agg(v.msg_id order by v.head_id, v.key_seq) filter (where v.msg_id <> v.head_id)
      into v_ready, v_run
      from (select c.msg_id, c.head_id, c.key_seq,
                   first_value(c.msg_id) over w = c.head_id
                   and coalesce(c.key_seq - first_value(c.key_seq) over w, 0) = row_number() over w - 1 as keep
              from (select coalesce(x.msg_id, h.msg_id) as msg_id, h.msg_id as head_id, x.key_seq
                      from (select h.msg_id, h.key_id, h.key_seq, h.attempts from bucketq.inbox h
                             where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned)
                             order by h.msg_id
                             limit v_room
                               for update skip locked) h
                      -- the key's rows from its head on (we hold the head's lock already)
                      left join lateral (
                        select x.msg_id, x.key_seq from bucketq.inbox x
                         where x.group_id = g.group_id and x.key_id = h.key_id
                           and x.key_seq >= h.key_seq
                           and x.key_seq < h.key_seq + case when h.attempts = 0 then max_per_key else 1 end
                           and (x.msg_id = h.msg_id
                                or (x.state = 3 and (x.available_at is null or x.available_at <= v_now)))
                         order by x.key_seq
                           for update skip locked) x on true
                     limit v_room) c
            window w as (partition by c.head_id order by c.key_seq)) v
     where v.keep;
  end if;

  if v_timed is not null or v_ready is not null then
    v_ids := coalesce(v_timed, '{}') || coalesce(v_ready, '{}') || coalesce(v_run, '{}');
    return query
  with leased as (
    update bucketq.inbox i
       set state = 1, available_at = v_until, attempts = i.attempts + 1,
           lease_token = v_token, consumer_id = _claim.consumer_id, epoch = ob.epoch
      from unnest(v_owned, v_epochs) as ob(bucket, epoch)
     where i.group_id = g.group_id
       and i.msg_id = any(v_ids)
       and ob.bucket = i.bucket
    returning i.msg_id, i.bucket, i.key_id, i.key_seq, i.attempts, i.sent_at, i.epoch
  )
  , m as materialized (
    -- One bitmap scan of the log for the whole batch, in the partitions its sent_at
    -- range touches (run-time pruning on the init-plan bounds).
    select x.id, x.sent_at, x.key, x.payload, x.headers from bucketq.message x
     where x.topic_id = g.topic_id
       and x.id = any(v_ids)
       and x.sent_at >= (select min(l.sent_at) from leased l)
       and x.sent_at <= (select max(l.sent_at) from leased l)
  )
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts, v_token, l.sent_at, v_until, l.epoch
    from leased l
    join m on m.id = l.msg_id and m.sent_at = l.sent_at
   -- Oldest first; a run right behind its head, in key_seq order.
   order by min(l.msg_id) over (partition by coalesce(l.key_id, -l.msg_id)), l.key_seq nulls first, l.msg_id;
    get diagnostics v_got = row_count;
  end if;

  -- Then the normal flow: the buckets' logs past their checkpoints, under one lease per
  -- bucket (a progress row, not a row per message).
  if v_got < max_messages and v_busy is not null then
    -- Buckets in the usual state go through one statement (_log_claim_next); the others,
    -- and any it finds otherwise, through _log_claim.
    select n.rows, n.rest, n.rest_epochs, n.rest_seqs, n.rest_states
      into v_rows, v_rest, v_rest_epochs, v_rest_seqs, v_rest_states
      from bucketq._log_claim_next(g, _claim.consumer_id, v_busy, v_busy_epochs, v_busy_seqs, v_busy_states,
                                   max_messages - v_got, max_per_key, v_now, v_token, v_until) n;
  end if;
  -- Both kinds' messages in one result, oldest key first, each key's run in key_seq
  -- order (as one _log_claim call returned them).
  if v_rows is not null or (v_got < max_messages and v_rest is not null) then
    return query
    select u.msg_id, u.bucket, u.key, u.key_seq, u.payload, u.headers, 1, v_token, u.sent_at, v_until, u.epoch
      from (select x.id as msg_id, x.bucket, x.key, x.key_id, x.key_seq, x.payload, x.headers, x.sent_at,
                   v_busy_epochs[array_position(v_busy, x.bucket)] as epoch
              from unnest(v_rows) as x
            union all
            select l.msg_id, l.bucket, l.key, l.key_id, l.key_seq, l.payload, l.headers, l.sent_at, l.epoch
              from bucketq._log_claim(g, _claim.consumer_id, v_rest, v_rest_epochs, v_rest_seqs, v_rest_states,
                                      max_messages - v_got - coalesce(cardinality(v_rows), 0), max_per_key,
                                      v_now, v_token, v_until) l
             where v_rest is not null and v_got + coalesce(cardinality(v_rows), 0) < max_messages) u
     order by min(u.msg_id) over (partition by coalesce(u.key_id, -u.msg_id)), u.key_seq nulls first, u.msg_id;
  end if;
end $$;

comment on function bucketq._claim(bucketq.consumer_group, text, int, int[], interval, int) is
'Internal: the body of bucketq.claim (see there), for its topic dispatch; a copy of it per topic is in schema bucketq_t<topic_id>.';
