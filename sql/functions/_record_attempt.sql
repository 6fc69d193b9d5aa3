-- The body of bucketq.record_attempt, after its group was found (g; bucketq._group checked the
-- caller's access), which calls it (the generic path) or the topic's own copy of it
-- (bucketq_t<topic_id>._record_attempt, see _topic_copies.sql). It runs inside bucketq.record_attempt: that
-- function's owner, search_path and planner settings apply.
create or replace function bucketq._record_attempt(g bucketq.consumer_group, consumer_id text, xact xid8, msg_ids bigint[])
returns void
language plpgsql
as $$
#variable_conflict use_column
declare
  v_own boolean;
  v_foreign bigint[];
  v_fenced bigint[];
  v_log_held bigint[];
  v_log_buckets int[];
  v_note_buckets int[];
  v_note_seqs bigint[];
  v_inbox boolean;      -- the group has inbox rows: usually none, and then no probe by id
begin
  if not exists (select from bucketq._consumer_joined_by_caller(g.group_id, _record_attempt.consumer_id)) then
    perform bucketq._check_consumer('record_attempt', g, consumer_id);
  end if;
  if xact is null or msg_ids is null or array_position(msg_ids, null) is not null or cardinality(msg_ids) = 0 then
    raise exception 'record_attempt: xact and msg_ids must not be NULL or empty (group %)', g.name
      using errcode = 'BQ005',
            hint = 'Pass the xact that claim_locked returned and the msg_ids it handed out (the first of each key is enough).';
  end if;
  if cardinality(msg_ids) > 10000 then
    raise exception 'record_attempt: % msg_ids, more than claim_locked hands out (10000) (group %)', cardinality(msg_ids), g.name
      using errcode = 'BQ005', hint = 'Pass the msg_ids of one claim_locked call.';
  end if;
  -- The transaction must be running now and be the caller's: its own, or one of another
  -- session of the same login in this database (the claiming connection; record_attempt
  -- is called from a second one). A finished, unknown or future transaction id, or
  -- another login's, is refused: the record would count attempts no handler made.
  -- The backends' top-level transaction ids come from pg_stat_get_activity (one pass
  -- over the backend array; pg_locks joined with pg_stat_activity collected every lock
  -- of the server and cost 0.2 ms a call). Its view of the backends is cached until the
  -- transaction ends: cleared first, so that a second call in one transaction sees a
  -- claim made since. The xid is 32 bits there: the full one must also lie between the
  -- oldest running transaction and ours, as a running transaction's does.
  v_own := coalesce(xact = pg_current_xact_id_if_assigned(), false);
  if not v_own then
    perform pg_catalog.pg_stat_clear_snapshot();
  end if;
  if not v_own and (not exists (
       select 1 from pg_catalog.pg_stat_get_activity(null) a
        where a.backend_xid = (xact::text::numeric % 4294967296)::bigint::text::xid
          and a.datid = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
          and a.usesysid = (select r.oid from pg_catalog.pg_roles r where r.rolname = session_user))
     or not (xact >= pg_snapshot_xmin(pg_current_snapshot()) and xact < pg_current_xact_id())) then
    raise exception 'record_attempt: transaction % is not running in a session of login % (group %)', xact, session_user, g.name
      using errcode = 'BQ005',
            detail = 'record_attempt records an attempt under way: the claiming transaction must still be open, and be this login''s. Nothing was recorded.',
            hint = 'Call it right after claim_locked, from a second session of the same login, with the xact claim_locked returned, while the claiming transaction is open.';
  end if;
  -- Each message must be held by that transaction (row-locked by claim_locked, made
  -- ready or already acked in it: the version we see has that transaction as its
  -- xmax) in a bucket this consumer owns.
  -- Messages read from their bucket's log by that transaction: claim_locked holds the
  -- bucket's cursor row until it ends (its batch row is not visible to us before it
  -- commits), and the bucket's checkpoint has not passed the message (it is neither in
  -- an earlier window nor behind the position in the current one) and it is not in the
  -- inbox. One statement for all.
  -- The messages are read by id first (materialized): joined to the bucket's rows, the
  -- plan also scanned message_xid for the whole bucket (xid is not null), a cost that
  -- grew with the log. Those ahead of the checkpoint are above the group's log_from
  -- (messages older than it come from the inbox, checked below).
  -- The bucket checks once per bucket (b), not per message. Each inbox probe is an
  -- index probe by msg_id (the lateral LIMIT): planned as an anti join on a generic
  -- plan, it read the group's whole inbox once per message (13 ms for a claim of 250
  -- with 1,000 messages waiting). With no inbox row in the group (one probe first), none
  -- is made: a message xact took from the inbox has its row there, locked by xact, since
  -- before xact's claim returned.
  v_inbox := exists (select 1 from bucketq.inbox i where i.group_id = g.group_id);
  with m as materialized (
    select m.id, m.bucket, m.xid, m.ord from bucketq.message m
     where m.topic_id = g.topic_id and m.id = any(msg_ids) and m.sent_at >= g.log_from
  ),
  b as materialized (
    select o.bucket, c.lo, c.hi, c.pos_ord, c.early_ids
      from bucketq.bucket_owner o
      join bucketq.cursor k on k.group_id = o.group_id and k.bucket = o.bucket
      cross join lateral (select p.lo, p.hi, p.pos_ord, p.early_ids from bucketq.progress p
                           where p.group_id = g.group_id and p.bucket = o.bucket and p.kind = 1
                           order by p.seq desc limit 1) c
     where o.group_id = g.group_id and o.owner = _record_attempt.consumer_id
       and o.bucket = any(array(select distinct m.bucket from m))
       and bucketq._xact_holds(xact, k.xmax)
  )
  select coalesce(array_agg(m.id), '{}'), coalesce(array_agg(m.bucket), '{}') into v_log_held, v_log_buckets
    from m
    join b on b.bucket = m.bucket
    left join lateral (select true as waits from bucketq.inbox i
                        where v_inbox and i.group_id = g.group_id and i.msg_id = m.id limit 1) ib on true
   where m.xid is not null
     and ib.waits is null
     and not pg_visible_in_snapshot(m.xid, b.lo)
     and not (pg_visible_in_snapshot(m.xid, b.hi) and m.ord <= b.pos_ord and m.id <> all(b.early_ids));
  select array_agg(u.id order by u.id) into v_foreign
    from unnest(msg_ids) u(id)
   where u.id <> all(v_log_held)
     and not exists (
     select 1 from bucketq.inbox i
       join bucketq.bucket_owner o on o.group_id = i.group_id and o.bucket = i.bucket
      where i.group_id = g.group_id and i.msg_id = u.id
        and o.owner = _record_attempt.consumer_id
        and bucketq._xact_holds(xact, i.xmax));
  if v_foreign is not null then
    -- In a bucket that transaction holds (claim_locked locks the cursor row of every
    -- bucket it hands out from, log or inbox) and that moved away from the consumer:
    -- fenced, as ack and nack say it (BQ008), not bad input. Only such buckets: no
    -- news of others.
    select array_agg(m.id order by m.id) into v_fenced
      from bucketq.message m
     where m.topic_id = g.topic_id and m.id = any(v_foreign)
       and not exists (select 1 from bucketq.bucket_owner o
                        where o.group_id = g.group_id and o.bucket = m.bucket and o.owner = _record_attempt.consumer_id)
       and exists (select 1 from bucketq.cursor k
                    where k.group_id = g.group_id and k.bucket = m.bucket and bucketq._xact_holds(xact, k.xmax));
    if v_fenced is not null then
      raise exception 'record_attempt: consumer % no longer owns the buckets of messages % in group % (fenced: the bucket moved to another consumer)',
        _record_attempt.consumer_id, bucketq._id_list(v_fenced), g.name
        using errcode = 'BQ008',
              detail = 'Nothing was recorded.',
              hint = 'Roll back the claiming transaction: the new owner delivers these messages. Heartbeat more often than the session timeout, then claim again.';
    end if;
    raise exception 'record_attempt: transaction % does not hold messages % for consumer % in group %',
      xact, bucketq._quote_input(v_foreign::text), _record_attempt.consumer_id, g.name
      using errcode = 'BQ005',
            detail = 'Only messages that claim_locked handed out to this consumer in that transaction, and that it still holds, can be recorded. Nothing was recorded.',
            hint = 'Pass the msg_ids that claim_locked returned in that transaction (the first of each key is enough).';
  end if;
  -- Messages the claim took from the inbox: the attempt log, settled by claim_locked.
  -- A probe per id: as msg_id = ANY() on a plan made on an empty inbox, Postgres 15
  -- read the group's whole inbox by its primary key and filtered.
  insert into bucketq.attempt_log (group_id, xact, consumer_id, msg_ids, started_at)
  select g.group_id, xact, _record_attempt.consumer_id, array_agg(i.msg_id order by i.msg_id), bucketq._now()
    from (select distinct u.id from unnest(msg_ids) as u(id)) u
    cross join lateral (select i.msg_id from bucketq.inbox i
                         where v_inbox and i.group_id = g.group_id and i.msg_id = u.id limit 1) i
  having count(*) > 0
  on conflict (group_id, xact) do update set msg_ids = bucketq.attempt_log.msg_ids || excluded.msg_ids;
  -- progress has no foreign key (migration 32), and we hold no cursor row: the group's
  -- row, locked as the key's check did, keeps a note from outliving a delete_group.
  perform 1 from bucketq.consumer_group x where x.group_id = g.group_id for key share;
  if not found then
    raise exception 'unknown consumer group: % (deleted while record_attempt ran)', bucketq._quote_input(g.name)
      using errcode = 'BQ003', hint = 'The group was deleted (delete_group): stop its workers.';
  end if;
  -- Messages it took from a bucket's log: a note per bucket (a progress 'attempt' row).
  -- If xact ends without settling them, the next claim of the bucket puts them in the
  -- inbox with their attempt counted (_log_expire).
  with noted as (
    insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, pos_ord, pos_id, msg_ids,
                                  xact, consumer_id, epoch, created_at)
    select g.group_id, h.bucket, 3, '1:1:', 0, '1:1:', 0, 0, 0, 0, array_agg(h.id), xact, _record_attempt.consumer_id,
           max(o.epoch), bucketq._now()
      from unnest(v_log_held, v_log_buckets) as h(id, bucket)
      join bucketq.bucket_owner o on o.group_id = g.group_id and o.bucket = h.bucket
     group by h.bucket
    having count(*) > 0
    returning bucket, seq
  )
  select array_agg(n.bucket), array_agg(n.seq) into v_note_buckets, v_note_seqs from noted n;
  -- A note must come right behind its batch: readers take a bucket's latest row as its
  -- state. If xact ended after the check above (a crash, a kill, a commit), others may
  -- have claimed and acked the bucket since, and a note after their rows would hand
  -- that batch out again. Checked after the write: while xact still runs it holds the
  -- cursor rows, so every later row of these buckets takes a higher seq than ours. If it
  -- ended, there is nothing under way to record: the notes go.
  if v_note_seqs is not null and not v_own and pg_xact_status(xact) is distinct from 'in progress' then
    delete from bucketq.progress p
     using unnest(v_note_buckets, v_note_seqs) as n(bucket, seq)
     where p.group_id = g.group_id and p.bucket = n.bucket and p.seq = n.seq;
  end if;
end $$;

comment on function bucketq._record_attempt(bucketq.consumer_group, text, xid8, bigint[]) is
'Internal: the body of bucketq.record_attempt (see there), for its topic dispatch; a copy of it per topic is in schema bucketq_t<topic_id>.';
