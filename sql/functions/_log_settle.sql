-- The log path of ack and nack: settle the batches (progress 'hand' rows) that hold
-- p_ids, given with their lease tokens (p_tokens NULL: batches of this transaction's
-- claim_locked). For each batch that is still its bucket's latest: check the claimer
-- still owns the bucket at the batch's epoch (else BQ008; the cursor row stays locked
-- until commit, so a new owner cannot read past the batch meanwhile), then write a 'done' row that
-- passes the whole batch and records p_acked as delivered. The batch's other messages
-- go to the inbox, where nack, retries and runs take them on: leased under the batch's
-- token (a lease), or ready or waiting behind their key (a locked batch, attempt not
-- counted yet). Keys acked here promote a message waiting behind them. A key's acked
-- messages must be its first ones in the batch (else BQ005, nothing done).
-- Returns the ids of p_ids found in such batches (the rest are the inbox's business).
create or replace function bucketq._log_settle(
  fn text, g bucketq.consumer_group, p_ids bigint[], p_tokens bigint[], p_acked bigint[],
  p_consumer text, p_now timestamptz)
returns bigint[]
language plpgsql
-- Every lookup here is an index probe. With statistics showing one bucket, the check
-- below that no row came after the batch ("exists ... seq > h.seq"), planned for its
-- first match, became a sequential scan of progress that finds none and reads all of
-- it, on every ack (test/sql-plans.test.ts).
set enable_seqscan = off
as $$
declare
  v_locked boolean := p_tokens is null;
  h bucketq.progress;
  v_mine bigint[];
  v_found bigint[] := '{}';
  v_bad bigint[];
  v_keys bigint[];
  v_rest bigint[];
  v_admin boolean;
  v_hands bucketq.progress[];
  v_acked_here bigint[];
  v_twice bigint[];
  v_tokens bigint[];
  v_token bigint;       -- the one lease token every message of the call passed, if so
  v_whole boolean;      -- the call names every id of the batch
  v_done bucketq.progress[] := '{}';
begin
  -- The batches: by token (progress_lease; every message of a batch passes the same
  -- token, so each distinct one once) or by this transaction (progress_xact). Two
  -- statements: one choosing between the two conditions could use neither index and
  -- read every batch the group ever had, on every ack. No "msg_ids && p_ids" here: the
  -- planner then read the group's whole progress by its primary key, comparing 250 x 250
  -- ids per row, a cost that grew with every batch (7 ms per ack after 50 batches). The
  -- loop below matches the ids. "group_id + 0": no index matches it, so the plan cannot
  -- take the primary key (group_id first), which reads all of the group's batches; a
  -- generic plan made while progress was nearly empty did (migration 26).
  if v_locked then
    select array_agg(p order by p.bucket) into v_hands from bucketq.progress p
     where p.xact = (select pg_current_xact_id()) and p.kind = 2 and p.group_id + 0 = g.group_id;
  else
    v_tokens := array(select distinct t from unnest(p_tokens) t where t is not null);
    select array_agg(p order by p.bucket) into v_hands from bucketq.progress p
     where p.lease_token = any(v_tokens) and p.kind = 2 and p.group_id + 0 = g.group_id;
    -- One claim's batches share its token: usually every message of the call has it.
    if cardinality(v_tokens) = 1 and array_position(p_tokens, null) is null then
      v_token := v_tokens[1];
    end if;
  end if;
  foreach h in array coalesce(v_hands, '{}')
  loop
    -- Usually the call settles whole batches under one token (a worker acks what it
    -- claimed): then the batch's ids are the caller's, and all acked (ack passes p_ids
    -- as p_acked), without the two statements below, which were a third of an ack. The
    -- test compares every pair ("@>"), which is cheaper than a statement only while
    -- the pairs are few: else the statements' joins (a batch of 250 acked whole would
    -- compare 250 x 250 pairs, twice the join's time).
    v_whole := (v_locked or v_token = h.lease_token) and cardinality(h.msg_ids) > 0
               and cardinality(p_ids)::bigint * cardinality(h.msg_ids) <= 10000
               and p_ids @> h.msg_ids;
    if v_whole then
      v_mine := h.msg_ids;
    else
      select array_agg(u.id) into v_mine
        from unnest(p_ids, coalesce(p_tokens, array_fill(null::bigint, array[cardinality(p_ids)]))) as u(id, tok)
        join unnest(h.msg_ids) as x(id) on x.id = u.id
       where v_locked or u.tok = h.lease_token;
    end if;
    continue when v_mine is null;
    -- A lease is the caller's only if it joined the batch's consumer (admins: any);
    -- others get 'stale', which tells them nothing (issue 13, item 1). A locked batch
    -- is the caller's own transaction's already.
    if not v_locked then
      -- (The consumer's row first: the caller joined it, as a rule. Asking whether the
      -- caller is an admin cost every ack a role lookup.)
      if not exists (select 1 from bucketq.consumer c
                      where c.group_id = g.group_id and c.consumer_id = h.consumer_id and c.joined_by = bucketq._caller()) then
        if v_admin is null then
          v_admin := bucketq._caller_is_admin();
        end if;
        continue when not v_admin;
      end if;
    end if;
    -- Still the bucket's latest (an attempt note of the same batch aside)? Otherwise it
    -- expired and was passed on, or was settled already: stale for the caller.
    perform 1 from bucketq.cursor k where k.group_id = g.group_id and k.bucket = h.bucket for update;
    continue when exists (select 1 from bucketq.progress p
                           where p.group_id = g.group_id and p.bucket = h.bucket and p.seq > h.seq
                             and not (p.kind = 3 and p.xact = h.xact));
    -- Fencing: the claimer must still own the bucket at the batch's epoch. A move after
    -- this check does not wait for us, but the new owner cannot read the bucket while we
    -- hold its cursor row, and after we commit it starts from our checkpoint.
    if not exists (select 1 from bucketq.bucket_owner o
                    where o.group_id = g.group_id and o.bucket = h.bucket and o.owner = h.consumer_id
                      and o.epoch = h.epoch) then
      raise exception '%: consumer % no longer owns the buckets of messages % in group % (fenced: the bucket moved to another consumer or a newer epoch)',
        fn, h.consumer_id, v_mine, g.name
        using errcode = 'BQ008',
              detail = 'Nothing was acked or nacked.',
              hint = 'Roll back: the effects of this transaction must not commit; the new owner delivers these messages. Heartbeat more often than the session timeout, then claim again.';
    end if;
    -- The batch's messages acked here, and the rest.
    if p_acked is null then
      v_acked_here := '{}'; v_rest := h.msg_ids;
    elsif v_whole and p_acked = p_ids then
      v_acked_here := h.msg_ids; v_rest := '{}';
    else
      select coalesce(array_agg(x.id) filter (where a.id is not null), '{}'),
             coalesce(array_agg(x.id) filter (where a.id is null), '{}')
        into v_acked_here, v_rest
        from unnest(h.msg_ids) as x(id)
        left join (select distinct y.id from unnest(p_acked) y(id)) a on a.id = x.id;
    end if;
    -- A batch acked whole cannot be acked out of order: skip the check (its self-join
    -- over the log's partitions costs more to plan than to run, on every call).
    -- The batch's keyed messages are read once, and an acked one is out of order when its
    -- key has a message not acked with a lower key_seq. (As a self-join, a generic plan
    -- over one topic's few partitions joined them by nested loop: an ack of 5,000 of a
    -- batch of 10,000 ran for minutes.)
    if p_acked is not null and cardinality(v_rest) > 0 then
      select array_agg(x.id order by x.id) into v_bad
        from (select m.id, m.key_seq, a.id is not null as acked,
                     min(m.key_seq) filter (where a.id is null) over (partition by m.key_id) as first_rest
                from bucketq.message m
                left join (select distinct y.id from unnest(p_acked) y(id)) a on a.id = m.id
               where m.topic_id = g.topic_id and m.id = any(h.msg_ids) and m.key_id is not null) x
       where x.acked and x.key_seq > x.first_rest;
      if v_bad is not null then
        raise exception '%: out of order in group %: messages % are acked ahead of earlier messages of their keys in the same batch (%), still leased',
          fn, g.name, v_bad,
          (select array_agg(e.id order by e.id) from bucketq.message e
            where e.topic_id = g.topic_id and e.id = any(h.msg_ids) and e.id <> all(p_acked)
              and e.key_id in (select m.key_id from bucketq.message m where m.topic_id = g.topic_id and m.id = any(v_bad)))
          using errcode = 'BQ005',
                detail = 'A key''s messages are acked in key_seq order. Nothing was acked.',
                hint = 'Ack the earlier messages first or in the same call; if one of them failed, nack it and do not ack the later ones.';
      end if;
    end if;
    -- Never twice: a message acked before (a done row, a delivery record) must not be
    -- acked again, whatever handed it out a second time. Checked where the bugs were:
    -- unless the batch follows an ack's done row directly (the normal flow: one probe),
    -- the bucket's position came from a recount, an expiry, a rewind or a pass over
    -- waiting messages, and the ids are looked up (about 2.5 us each).
    if cardinality(v_acked_here) > 0
       and not exists (select 1 from (select p.kind, p.consumer_id from bucketq.progress p
                                       where p.group_id = g.group_id and p.bucket = h.bucket and p.seq < h.seq
                                       order by p.seq desc limit 1) x
                        where x.kind = 1 and x.consumer_id is not null) then
      v_twice := bucketq._acked_before(g, v_acked_here, true);
    end if;
    if v_twice is not null then
      raise exception '%: messages % of group % were acked before (a delivery record exists)', fn, v_twice, g.name
        using errcode = 'BQ006',
              detail = 'They were handed out again after their ack. Nothing was acked.',
              hint = 'Roll back: their effects committed with the first ack. This is a bug in bucketq: please report it with the output of select * from bucketq.message_states where msg_id = any(...) for these ids.';
    end if;
    if cardinality(v_rest) > 0 then
      perform bucketq._log_materialize(g, v_rest, case when v_locked then '{}' else v_rest end, not v_locked,
                                       h.lease_token, h.leased_until, h.consumer_id, h.epoch, p_now);
      if v_locked then
        -- Still this transaction's claim: lock the rows, as claim_locked locks the
        -- inbox rows it hands out, so that ack and nack here find them held.
        perform 1 from bucketq.inbox i where i.group_id = g.group_id and i.msg_id = any(v_rest) for update;
      end if;
    end if;
    -- Its done row, written with the others at the end (_progress_append). In the
    -- table's column order, seq NULL.
    v_done := v_done || row(
      g.group_id, h.bucket, null, 1, h.lo, h.lo_floor, h.hi, h.hi_floor, h.hi_ceil, h.early_ids, h.pos_ord, h.pos_id,
      v_acked_here, null, null, pg_current_xact_id(), h.consumer_id, h.epoch, p_now)::bucketq.progress;
    -- (Only if the group has any keyed row in the inbox: usually it has none, and then
    -- one probe saves reading the acked messages back from the log.)
    if p_acked is not null
       and exists (select 1 from bucketq.inbox x where x.group_id = g.group_id and x.key_id is not null) then
      select array_agg(distinct m.key_id) into v_keys from bucketq.message m
       where m.topic_id = g.topic_id and m.id = any(v_acked_here) and m.key_id is not null;
      -- A message of these keys may wait in the inbox behind the one acked (the rest
      -- of a run handed back, a delayed one). Wait for whoever changes a key's next
      -- row, then promote in a new statement, which sees what they committed. If none
      -- of these keys has a row in the inbox (the usual case: one probe, planned once)
      -- there is nothing to promote, and nobody can add one meanwhile: rows of this
      -- bucket's keys come from claims, settles and rewinds of the bucket, which wait
      -- for the cursor row we hold. A probe per key (LATERAL ... LIMIT 1): as one
      -- key_id = ANY() filter, the generic plan read the group's whole inbox by its
      -- primary key once per bucket.
      if v_keys is not null
         and exists (select 1 from unnest(v_keys) as k(key_id)
                      cross join lateral (select 1 from bucketq.inbox x
                                           where x.group_id = g.group_id and x.key_id = k.key_id limit 1) l) then
        perform 1 from unnest(v_keys) as k(key_id)
          cross join lateral (select x.msg_id from bucketq.inbox x
                               where x.group_id = g.group_id and x.key_id = k.key_id
                               order by x.key_seq limit 1
                                 for no key update) l;
        -- (_promote must see the done rows first: it leaves alone a key whose earlier
        -- message a bucket's latest row hands out.)
        perform bucketq._progress_append(v_done);
        v_done := '{}';
        perform bucketq._promote(g.group_id, v_keys, p_now);
      end if;
    end if;
    v_found := v_found || v_mine;
  end loop;
  if cardinality(v_done) > 0 then
    perform bucketq._progress_append(v_done);
  end if;
  return v_found;
end $$;
