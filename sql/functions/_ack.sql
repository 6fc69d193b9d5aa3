-- The body of bucketq.ack, after its group was found (g; bucketq._group checked the
-- caller's access), which calls it (the generic path) or the topic's own copy of it
-- (bucketq_t<topic_id>._ack, see _topic_copies.sql). It runs inside bucketq.ack: that
-- function's owner, search_path and planner settings apply.
create or replace function bucketq._ack(
  g bucketq.consumer_group,
  msg_ids bigint[],
  lease_tokens bigint[],
  consumer_id text default null,
  strict boolean default true
) returns table (msg_id bigint, status text)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_now timestamptz;
  v_locked boolean;
  v_acked bigint[];
  v_keys bigint[];
  v_max_seqs bigint[];
  v_stale bigint[];
  v_skipped bigint[];
  v_twice bigint[];
  v_tokens jsonb;
  v_xact xid8;
  v_admin boolean;
  v_caller name;
  v_all bigint[] := msg_ids;   -- as given, for the statuses
  v_log bigint[];
begin
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('ack', g);
  end if;
  v_locked := lease_tokens is null;
  if v_locked then
    perform bucketq._check_locked_args('ack', g, msg_ids, _ack.consumer_id);
    -- Locked claims: only rows this transaction holds (claim_locked locked them in it).
    v_xact := pg_current_xact_id();
  else
    perform bucketq._check_lease_args('ack', msg_ids, lease_tokens);
  end if;
  if _ack.consumer_id is not null and not exists (select from bucketq._consumer_joined_by_caller(g.group_id, _ack.consumer_id)) then
    perform bucketq._check_consumer('ack', g, _ack.consumer_id);
  end if;
  v_now := bucketq._now();

  -- Messages handed out from the log (the normal flow): the batch's checkpoint moves.
  v_log := bucketq._log_settle('ack', g, msg_ids, lease_tokens, msg_ids, _ack.consumer_id, v_now);
  if cardinality(v_log) = cardinality(msg_ids) then
    return query select u.id, 'acked'::text from unnest(v_all) u(id);
    return;
  end if;
  -- The rest are inbox rows: retries, runs handed back, waiting messages. Their leases:
  -- only those of consumers the caller joined (admins: any).
  v_admin := bucketq._caller_is_admin();
  v_caller := bucketq._caller();
  if cardinality(v_log) > 0 then
    select array_agg(u.id order by u.o), array_agg(u.tok order by u.o) into msg_ids, lease_tokens
      from unnest(msg_ids, lease_tokens) with ordinality as u(id, tok, o)
     where u.id <> all(v_log);
    if v_locked then
      lease_tokens := null;
    end if;
  end if;

  if not v_locked then
    -- Each id's token (a msg_id given twice counts with its first token) as a map
    -- from id to token: one lookup per row, whatever plan the planner picks (a
    -- search of the array per row was quadratic in the number of ids; a join is at
    -- the mercy of row estimates, which are stale in a busy inbox).
    select jsonb_object_agg(a.id::text, a.tok) into v_tokens
      from (select distinct on (u.id) u.id, u.tok
              from unnest(msg_ids, lease_tokens) with ordinality as u(id, tok, n)
             order by u.id, u.n) a;
  end if;

  with locked as materialized (
    -- Lock in (key, id) order, the order producers' commit-time checks use: no deadlock.
    -- One bitmap scan of the primary key for the whole array. state + 0: the planner
    -- must not use the partial index inbox_timed, which it believes tiny and would scan
    -- once per array element.
    select i.msg_id from bucketq.inbox i
     where i.group_id = g.group_id and i.msg_id = any(msg_ids)
       and case when v_locked then i.lease_token is null and i.state + 0 in (0, 3)
                     and (bucketq._xact_holds(v_xact, i.xmax) or bucketq._inserted_here(i.xmin))
                else i.lease_token = (v_tokens ->> i.msg_id::text)::bigint and i.state + 0 = 1
                     and (v_admin or exists (select 1 from bucketq.consumer c
                                              where c.group_id = g.group_id and c.consumer_id = i.consumer_id
                                                and c.joined_by = v_caller)) end
     order by i.key_id, i.msg_id
       for update of i
  ),
  gone as (
    -- The ownership check is part of the DELETE: the claimer must still own the bucket
    -- (at the lease's epoch, for a lease). The deleted row stays locked until we commit.
    -- The locked ids as one array: an index scan of the primary key, whatever the
    -- planner believes of the CTE's size (joined to it, a stale estimate of one row
    -- made it rescan the CTE per row: quadratic).
    -- A locked claim's claimer is the consumer_id given here: the row's own consumer_id
    -- is whoever last leased it (a retry's or a dead letter's keeps it), not the claimer.
    delete from bucketq.inbox i
     where i.group_id = g.group_id and i.msg_id = any(array(select l.msg_id from locked l))
       and exists (select 1 from bucketq.bucket_owner o
                    where o.group_id = g.group_id and o.bucket = i.bucket
                      and case when v_locked then o.owner = _ack.consumer_id
                               else o.owner = i.consumer_id and o.epoch = i.epoch end)
    returning i.msg_id, i.key_id, i.key_seq, i.sent_at, i.attempts, i.consumer_id, i.epoch, i.bucket, i.state
  ),
  recorded as (
    insert into bucketq.delivery (group_id, topic_id, msg_id, sent_at, attempt, consumer_id, epoch, acked_at)
    select g.group_id, g.topic_id, gone.msg_id, gone.sent_at, gone.attempts + v_locked::int,
           case when v_locked then _ack.consumer_id else gone.consumer_id end,
           case when v_locked then (select o.epoch from bucketq.bucket_owner o where o.group_id = g.group_id and o.bucket = gone.bucket)
                else gone.epoch end,
           v_now
      from gone
    -- A delivery record already there would be a second delivery of an acked message:
    -- refused below with BQ006 instead of a raw unique violation.
    on conflict do nothing
    returning msg_id
  ),
  per_key as (
    select gone.key_id, max(gone.key_seq) as max_seq from gone where gone.key_id is not null group by gone.key_id
  )
  select (select array_agg(gone.msg_id) from gone),
         (select array_agg(gone.msg_id order by gone.msg_id) from gone where gone.msg_id not in (select r.msg_id from recorded r)),
         (select array_agg(p.key_id order by p.key_id) from per_key p),
         (select array_agg(p.max_seq order by p.key_id) from per_key p),
         -- Locked claims: a key's acked rows are the one it handed out (state 0) and
         -- the rest of its run, consecutive behind it.
         (select array_agg(r.msg_id order by r.msg_id) from (
            select gone.msg_id, gone.key_seq - first_value(gone.key_seq) over w <> row_number() over w - 1
                                or first_value(gone.state) over w <> 0 as bad
              from gone where v_locked and gone.key_id is not null
            window w as (partition by gone.key_id order by gone.key_seq)) r where r.bad)
    into v_acked, v_twice, v_keys, v_max_seqs, v_skipped;

  -- and none of them acked by a batch of the log path (its done row)
  if v_twice is null then
    v_twice := bucketq._acked_before(g, v_acked, false);
  end if;
  if v_twice is not null then
    raise exception 'ack: messages % of group % were acked before (a delivery record exists)', v_twice, g.name
      using errcode = 'BQ006',
            detail = 'They were delivered again after their ack (a replay or rewind raced it). Nothing was acked.',
            hint = 'Roll back: their effects committed with the first ack.';
  end if;

  if v_skipped is not null then
    raise exception 'ack: out of order in group %: messages % are not the next of their keys, nor in a run right behind it',
      g.name, v_skipped
      using errcode = 'BQ005',
            detail = 'A key''s messages are acked in key_seq order: the one claim_locked handed out first, then the rest of its run. Nothing was acked.',
            hint = 'Ack the earlier messages first or in the same call; if one of them failed, nack it and do not ack the later ones.';
  end if;

  if coalesce(cardinality(v_acked), 0) < cardinality(msg_ids) then
    -- (An id given twice is acked once: fewer acked than given, none stale.)
    select array_agg(distinct u.id order by u.id) into v_stale
      from unnest(msg_ids) u(id)
     where not exists (select 1 from unnest(v_acked) a(id) where a.id = u.id);
  end if;
  if v_stale is not null then
    if v_locked then
      perform bucketq._raise_if_fenced_locked('ack', g, v_stale, _ack.consumer_id);
    else
      perform bucketq._raise_if_fenced('ack', g, msg_ids, lease_tokens);
    end if;
    if strict then
      raise exception 'ack: % of % messages are not % in group % (msg_ids %)',
        cardinality(v_stale), cardinality(msg_ids),
        case when v_locked then 'waiting or ready, unleased' else 'leased with these tokens' end, g.name, bucketq._id_list(v_stale)
        using errcode = 'BQ006',
              detail = case when v_locked
                            then 'With lease_tokens => NULL, ack takes messages this transaction claimed with claim_locked. These were acked, dead-lettered or leased by claim meanwhile, or never existed. Nothing was acked.'
                            else 'Their lease expired and they were claimed again, or they were already acked, nacked or dead-lettered. Nothing was acked.' end,
              hint = 'Roll back: the effects of this transaction must not commit. The messages will be (or were) delivered again. Pass strict => false to ack the rest and get a status per message.';
    end if;
  end if;

  if v_locked and v_acked is not null then
    -- This transaction's attempt is done if it commits: drop its record now, so claims
    -- do not have to settle it (if we roll back, the record is back with us).
    delete from bucketq.attempt_log a where a.group_id = g.group_id and a.xact = pg_current_xact_id();
  end if;

  if v_keys is not null then
    v_skipped := bucketq._promote_acked(g.group_id, v_keys, v_max_seqs, v_now);
    if v_skipped is not null then
      raise exception 'ack: out of order in group %: messages % are still leased, ahead of later messages of their keys acked here',
        g.name, v_skipped
        using errcode = 'BQ005',
              detail = 'A run''s messages are acked in key_seq order. Nothing was acked.',
              hint = 'Ack the earlier messages first or in the same call; if one of them failed, nack it (the rest of its run then waits again) and do not ack the later ones.';
    end if;
  end if;

  if v_stale is null then
    return query select u.id, 'acked'::text from unnest(v_all) u(id);
    return;
  end if;
  return query
  select u.id,
         case when u.id = any(coalesce(v_acked, '{}')) or u.id = any(v_log) then 'acked'
              -- Only the caller's own consumers' deliveries: statuses must not tell a
              -- caller which ids exist.
              when bucketq._delivered(g, u.id, case when v_admin then null else v_caller end) then 'already_acked'
              else 'stale' end
    from unnest(v_all) with ordinality u(id, n)
   order by u.n;
end $$;

comment on function bucketq._ack(bucketq.consumer_group, bigint[], bigint[], text, boolean) is
'Internal: the body of bucketq.ack (see there), for its topic dispatch; a copy of it per topic is in schema bucketq_t<topic_id>.';
