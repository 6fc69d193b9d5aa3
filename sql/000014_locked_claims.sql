-- bucketq 000014: locked claims. claim_locked hands out ready messages by locking their
-- inbox rows in the caller's transaction (FOR NO KEY UPDATE SKIP LOCKED) and writes
-- nothing: the same transaction runs the handlers and acks, and its commit is the only
-- write of the message's life on the consumer side besides the ack itself. A lease
-- (claim) writes every row once more and commits on its own.
--
-- What holds the message is the row lock, not a lease:
--   - concurrent claimers skip it (SKIP LOCKED), as they skip leased rows;
--   - if the transaction ends without committing (worker crash, lost connection,
--     idle_in_transaction_session_timeout, rollback), the lock is gone at once and the
--     message is ready again: no expiry to wait for;
--   - ack and nack take lease_tokens => NULL for such messages, with the consumer_id
--     that claimed them; ack checks it still owns the bucket (else BQ008), and the rows
--     stay locked until commit, so a new owner can never hand them out meanwhile.
-- An aborted transaction leaves no trace, so it cannot count its attempt itself. The
-- claimer records it from another session (record_attempt: one row per batch), and the
-- next claim_locked of the group counts an attempt for each message of a transaction
-- that ended without committing: a message that kills its worker every time is
-- dead-lettered after max_attempts, as with leases.
--
-- The inbox's attempts column counts finished attempts for rows no one holds; a leased
-- row counts its running attempt as well (claim adds it), a locked row does not (ack and
-- nack add it).

create table bucketq.attempt_log (
  group_id    int not null references bucketq.consumer_group on delete cascade,
  xact        xid8 not null,
  consumer_id text not null,
  msg_ids     bigint[] not null,
  started_at  timestamptz not null,
  primary key (group_id, xact)
) with (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);

comment on table bucketq.attempt_log is
'Attempts under way by claim_locked transactions (one row per transaction, written by record_attempt from another session). claim_locked settles rows whose transaction ended: aborted counts an attempt for the heads listed.';

-- Count the attempts of locked claims whose transaction ended without committing: one
-- more attempt for each message listed that is still the next of its key (rows the
-- caller holds count too: its own locks do not make it skip them). A message locked by
-- another transaction right now stays listed for a later call; if that one commits its
-- ack, the message is gone and only its delivery record's attempt number is one short.
-- Returns how many messages it dead-lettered.
create function bucketq._settle_attempts(g bucketq.consumer_group) returns int
language plpgsql as $$
declare
  v_dead int := 0;
  r record;
  v_counted bigint[];
  v_exhausted bigint[];
  v_rest bigint[];
begin
  for r in
    select a.xact, a.msg_ids, a.consumer_id, pg_xact_status(a.xact) as status
      from bucketq.attempt_log a
     where a.group_id = g.group_id and pg_xact_status(a.xact) is distinct from 'in progress'
       for update skip locked
  loop
    v_rest := null;
    if r.status = 'aborted' then
      select array_agg(x.msg_id) into v_counted from (
        select i.msg_id from bucketq.inbox i
         where i.group_id = g.group_id and i.msg_id = any(r.msg_ids) and i.state + 0 = 0 and i.lease_token is null
         order by i.key_id, i.msg_id
           for no key update skip locked) x;
      select array_agg(i.msg_id) into v_rest from bucketq.inbox i
       where i.group_id = g.group_id and i.msg_id = any(r.msg_ids) and i.state + 0 = 0 and i.lease_token is null
         and i.msg_id <> all(coalesce(v_counted, '{}'));
      if v_counted is not null then
        with counted as (
          update bucketq.inbox i
             set attempts = i.attempts + 1,
                 last_error = format('the transaction of consumer %s that held it ended without committing (crash, lost connection, idle_in_transaction_session_timeout or rollback)', r.consumer_id)
           where i.group_id = g.group_id and i.msg_id = any(v_counted)
          returning i.msg_id, i.attempts
        )
        select array_agg(c.msg_id) filter (where c.attempts >= g.max_attempts) into v_exhausted from counted c;
        if v_exhausted is not null then
          v_dead := v_dead + cardinality(v_exhausted);
          perform bucketq._dead_letter(g, v_exhausted,
            array_fill(format('its transaction ended without committing in each of %s attempts (last held by consumer %s: crash, lost connection or timeout)',
                              g.max_attempts, r.consumer_id),
                       array[cardinality(v_exhausted)]));
        end if;
      end if;
    end if;
    if v_rest is null then
      delete from bucketq.attempt_log a where a.group_id = g.group_id and a.xact = r.xact;
    else
      update bucketq.attempt_log a set msg_ids = v_rest where a.group_id = g.group_id and a.xact = r.xact;
    end if;
  end loop;
  return v_dead;
end $$;

create function bucketq.record_attempt(group_name text, consumer_id text, xact xid8, msg_ids bigint[])
returns void
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('record_attempt', consumer_id);
  if xact is null or msg_ids is null or array_position(msg_ids, null) is not null then
    raise exception 'record_attempt: xact and msg_ids must not be NULL (group %)', g.name
      using errcode = 'BQ005',
            hint = 'Pass the xact that claim_locked returned and the msg_ids it handed out (the first of each key is enough).';
  end if;
  insert into bucketq.attempt_log (group_id, xact, consumer_id, msg_ids, started_at)
  values (g.group_id, xact, record_attempt.consumer_id, msg_ids, bucketq._now())
  on conflict (group_id, xact) do update set msg_ids = bucketq.attempt_log.msg_ids || excluded.msg_ids;
end $$;

comment on function bucketq.record_attempt(text, text, xid8, bigint[]) is
'Call from a session other than the claiming one (autocommit), right after claim_locked handed out messages: records that transaction xact is attempting msg_ids. If that transaction then ends without committing (the worker crashed, its connection dropped or timed out, it rolled back), the next claim_locked of the group counts an attempt for each of those messages that is still the next of its key, and dead-letters those whose attempts are spent. Without it, a message that kills its worker is retried forever.';

-- Make due rows of these buckets ready in the caller's transaction: retries whose
-- backoff ended, not_before reached, and expired leases (taken with claim: tails wait
-- behind their heads again, heads whose attempts are spent are dead-lettered). Rows
-- locked elsewhere are left for later.
create function bucketq._ready_due(g bucketq.consumer_group, p_buckets int[], p_now timestamptz, p_limit int)
returns void
language plpgsql as $$
declare
  v_expired bigint[];
  v_exhausted bigint[];
  v_delayed bigint[];
begin
  select array_agg(x.msg_id) filter (where x.state = 1), array_agg(x.msg_id) filter (where x.state = 2)
    into v_expired, v_delayed
    from (select i.msg_id, i.state from bucketq.inbox i
           where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= p_now
             and i.bucket = any(p_buckets)
           order by i.available_at
           limit p_limit
             for no key update skip locked) x;
  if v_expired is not null then
    select array_agg(u.msg_id) filter (where u.head and u.attempts >= g.max_attempts) into v_exhausted
      from bucketq._unlease(g.group_id, v_expired, v_expired) u;
    if v_exhausted is not null then
      perform bucketq._dead_letter(g, v_exhausted,
        array_fill(format('lease expired after %s attempts', g.max_attempts), array[cardinality(v_exhausted)]));
    end if;
  end if;
  if v_delayed is not null then
    update bucketq.inbox i set state = 0, available_at = null
     where i.group_id = g.group_id and i.msg_id = any(v_delayed);
  end if;
end $$;

create function bucketq.claim_locked(
  group_name text,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, sent_at timestamptz, epoch bigint, xact xid8)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_now timestamptz;
  v_owned int[];
  v_epochs bigint[];
  v_ids bigint[];
  v_dead int;
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('claim_locked', consumer_id);
  if max_messages is null or max_messages < 1 or max_messages > 10000 then
    raise exception 'claim_locked: invalid max_messages % for group %', coalesce(max_messages::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'max_messages is 1 to 10000.';
  end if;
  if max_per_key is null or max_per_key < 1 or max_per_key > 10000 then
    raise exception 'claim_locked: invalid max_per_key % for group %', coalesce(max_per_key::text, 'NULL'), g.name
      using errcode = 'BQ005',
            hint = 'max_per_key is 1 (only the head of each key) to 10000 (a run of up to that many consecutive messages of a key, to be handled and acked in key_seq order).';
  end if;
  if buckets is not null then
    select * into t from bucketq.topic where topic_id = g.topic_id;
    if exists (select 1 from unnest(buckets) b where b is null or b < 0 or b >= t.buckets) then
      raise exception 'claim_locked: buckets % out of range for topic % (0 to %)', buckets, t.name, t.buckets - 1
        using errcode = 'BQ005', hint = 'Pass bucket numbers between 0 and buckets - 1, or NULL for all buckets.';
    end if;
  end if;

  v_now := bucketq._now();
  select array_agg(o.bucket), array_agg(o.epoch) into v_owned, v_epochs
    from bucketq.bucket_owner o
   where o.group_id = g.group_id and o.owner = claim_locked.consumer_id
     and o.heartbeat_at > v_now - g.session_timeout
     and (buckets is null or o.bucket = any(buckets));
  if v_owned is null then
    if not exists (select 1 from bucketq.consumer c
                    where c.group_id = g.group_id and c.consumer_id = claim_locked.consumer_id
                      and c.heartbeat_at > v_now - g.session_timeout) then
      raise exception 'claim_locked: consumer % is not a live member of group %', claim_locked.consumer_id, g.name
        using errcode = 'BQ008',
              hint = format('Call bucketq.join(%L, %L) first, then bucketq.heartbeat well within the session timeout (%s).',
                            g.name, claim_locked.consumer_id, g.session_timeout);
    end if;
    return;
  end if;

  -- Attempts of transactions that ended without committing count first, so a message
  -- that crashed its worker comes alone (no run) and is dead-lettered when they are spent.
  if exists (select 1 from bucketq.attempt_log a where a.group_id = g.group_id) then
    perform bucketq._settle_attempts(g);
  end if;
  if exists (select 1 from bucketq.inbox i
              where i.group_id = g.group_id and i.state in (1, 2) and i.available_at <= v_now
                and i.bucket = any(v_owned)) then
    perform bucketq._ready_due(g, v_owned, v_now, max_messages);
  end if;

  -- As in claim: ready keys, oldest head first, each with its run. FOR NO KEY UPDATE:
  -- producers' commit-time checks (FOR KEY SHARE) do not wait for the handlers.
  select array_agg(v.msg_id)
    into v_ids
    from (select c.msg_id,
                 first_value(c.msg_id) over w = c.head_id
                 and coalesce(c.key_seq - first_value(c.key_seq) over w, 0) = row_number() over w - 1 as keep
            from (select coalesce(x.msg_id, h.msg_id) as msg_id, h.msg_id as head_id, x.key_seq
                    from (select h.msg_id, h.key_id, h.key_seq, h.attempts from bucketq.inbox h
                           where h.group_id = g.group_id and h.state = 0 and h.bucket = any(v_owned)
                           order by h.msg_id
                           limit max_messages
                             for no key update skip locked) h
                    left join lateral (
                      select x.msg_id, x.key_seq from bucketq.inbox x
                       where x.group_id = g.group_id and x.key_id = h.key_id
                         and x.key_seq >= h.key_seq
                         and x.key_seq < h.key_seq + case when h.attempts = 0 then max_per_key else 1 end
                         and (x.msg_id = h.msg_id
                              or (x.state = 3 and (x.available_at is null or x.available_at <= v_now)))
                       order by x.key_seq
                         for no key update skip locked) x on true
                   limit max_messages) c
          window w as (partition by c.head_id order by c.key_seq)) v
   where v.keep;
  -- A message we just took that an aborted transaction held when the first settling
  -- ran (locked elsewhere then) counts now: we hold it, no one else can.
  if v_ids is not null
     and exists (select 1 from bucketq.attempt_log a
                  where a.group_id = g.group_id and a.msg_ids && v_ids and pg_xact_status(a.xact) = 'aborted') then
    v_dead := bucketq._settle_attempts(g);
    if v_dead > 0 and g.on_exhausted = 'block' then
      -- A head of ours just dead-lettered holds its key: the rest of its run stays.
      select array_agg(u.id) into v_ids from unnest(v_ids) u(id)
       where not exists (select 1 from bucketq.inbox i join bucketq.inbox y on y.group_id = i.group_id and y.key_id = i.key_id
                          where i.group_id = g.group_id and i.msg_id = u.id and y.state = 4);
    end if;
  end if;
  if v_ids is null then
    return;
  end if;

  return query
  with held as materialized (
    select i.msg_id, i.bucket, i.key_id, i.key_seq, i.attempts, i.sent_at, ob.epoch
      from bucketq.inbox i
      join unnest(v_owned, v_epochs) as ob(bucket, epoch) on ob.bucket = i.bucket
     where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state + 0 in (0, 3)
  )
  , m as materialized (
    select x.id, x.sent_at, x.key, x.payload, x.headers from bucketq.message x
     where x.topic_id = g.topic_id
       and x.id = any(v_ids)
       and x.sent_at >= (select min(l.sent_at) from held l)
       and x.sent_at <= (select max(l.sent_at) from held l)
  )
  select l.msg_id, l.bucket, m.key, l.key_seq, m.payload, m.headers, l.attempts + 1, l.sent_at, l.epoch,
         pg_current_xact_id()
    from held l
    join m on m.id = l.msg_id and m.sent_at = l.sent_at
   order by min(l.msg_id) over (partition by coalesce(l.key_id, -l.msg_id)), l.key_seq nulls first, l.msg_id;
end $$;

comment on function bucketq.claim_locked(text, text, int, int[], int) is
'Claim by row lock, in the caller''s transaction (BEGIN first: in autocommit the locks end with the statement). Like claim, it hands out up to max_messages ready messages of the buckets this consumer owns, oldest key first, a key on its first attempt with its run of up to max_per_key messages, in key_seq order, and never a key''s next message before the one before it is acked or dead-lettered. It writes no lease: the rows stay locked (FOR NO KEY UPDATE; other claimers skip them) until the transaction ends. Handle the messages and ack them in the same transaction with lease_tokens => NULL and consumer_id; nack failures there too. If the transaction ends without committing, the messages are ready again at once. Returns lease-free rows: attempt (1 = first try), the bucket''s epoch and xact, the transaction id to pass to record_attempt from another session so that a crash counts as an attempt.';

create or replace function bucketq.ack(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  consumer_id text default null,
  strict boolean default true
) returns table (msg_id bigint, status text)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_locked boolean;
  v_acked bigint[];
  v_keys bigint[];
  v_max_seqs bigint[];
  v_stale bigint[];
  v_skipped bigint[];
begin
  g := bucketq._group(group_name);
  v_locked := lease_tokens is null;
  if v_locked then
    perform bucketq._check_locked_args('ack', g, msg_ids, ack.consumer_id);
  else
    perform bucketq._check_lease_args('ack', msg_ids, lease_tokens);
  end if;
  v_now := bucketq._now();

  with locked as materialized (
    -- Lock in (key, id) order, the order producers' commit-time checks use: no deadlock.
    -- One bitmap scan of the primary key for the whole array. state + 0: the planner
    -- must not use the partial index inbox_timed, which it believes tiny and would scan
    -- once per array element. (A msg_id given twice counts with its first token.)
    select i.msg_id from bucketq.inbox i
     where i.group_id = g.group_id and i.msg_id = any(msg_ids)
       and case when v_locked then i.lease_token is null and i.state + 0 in (0, 3)
                else i.lease_token = lease_tokens[array_position(msg_ids, i.msg_id)] and i.state + 0 = 1 end
     order by i.key_id, i.msg_id
       for update of i
  ),
  gone as (
    -- The ownership check is part of the DELETE: the claimer must still own the bucket
    -- (at the lease's epoch, for a lease). The deleted row stays locked until we commit.
    delete from bucketq.inbox i
     using locked
     where i.group_id = g.group_id and i.msg_id = any(msg_ids) and i.msg_id = locked.msg_id
       and exists (select 1 from bucketq.bucket_owner o
                    where o.group_id = g.group_id and o.bucket = i.bucket
                      and o.owner = coalesce(i.consumer_id, ack.consumer_id)
                      and (v_locked or o.epoch = i.epoch))
    returning i.msg_id, i.key_id, i.key_seq, i.sent_at, i.attempts, i.consumer_id, i.epoch, i.bucket, i.state
  ),
  recorded as (
    insert into bucketq.delivery (group_id, topic_id, msg_id, sent_at, attempt, consumer_id, epoch, acked_at)
    select g.group_id, g.topic_id, gone.msg_id, gone.sent_at, gone.attempts + v_locked::int,
           coalesce(ack.consumer_id, gone.consumer_id),
           coalesce(gone.epoch, (select o.epoch from bucketq.bucket_owner o where o.group_id = g.group_id and o.bucket = gone.bucket)),
           v_now
      from gone
  ),
  per_key as (
    select gone.key_id, max(gone.key_seq) as max_seq from gone where gone.key_id is not null group by gone.key_id
  )
  select (select array_agg(gone.msg_id) from gone),
         (select array_agg(p.key_id order by p.key_id) from per_key p),
         (select array_agg(p.max_seq order by p.key_id) from per_key p),
         -- Locked claims: a key's acked rows are the one it handed out (state 0) and
         -- the rest of its run, consecutive behind it.
         (select array_agg(r.msg_id order by r.msg_id) from (
            select gone.msg_id, gone.key_seq - first_value(gone.key_seq) over w <> row_number() over w - 1
                                or first_value(gone.state) over w <> 0 as bad
              from gone where v_locked and gone.key_id is not null
            window w as (partition by gone.key_id order by gone.key_seq)) r where r.bad)
    into v_acked, v_keys, v_max_seqs, v_skipped;

  if v_skipped is not null then
    raise exception 'ack: out of order in group %: messages % are not the next of their keys, nor in a run right behind it',
      g.name, v_skipped
      using errcode = 'BQ005',
            detail = 'A key''s messages are acked in key_seq order: the one claim_locked handed out first, then the rest of its run. Nothing was acked.',
            hint = 'Ack the earlier messages first or in the same call; if one of them failed, nack it and do not ack the later ones.';
  end if;

  if coalesce(cardinality(v_acked), 0) < cardinality(msg_ids) then
    select array_agg(u.id order by u.id) into v_stale
      from unnest(msg_ids) u(id)
     where u.id <> all(coalesce(v_acked, '{}'));
    if v_locked then
      perform bucketq._raise_if_fenced_locked('ack', g, v_stale, ack.consumer_id);
    else
      perform bucketq._raise_if_fenced('ack', g, msg_ids, lease_tokens);
    end if;
    if strict then
      raise exception 'ack: % of % messages are not % in group % (msg_ids %)',
        cardinality(v_stale), cardinality(msg_ids),
        case when v_locked then 'waiting or ready, unleased' else 'leased with these tokens' end, g.name, v_stale
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
    return query select u.id, 'acked'::text from unnest(msg_ids) u(id);
    return;
  end if;
  return query
  select u.id,
         case when u.id = any(coalesce(v_acked, '{}')) then 'acked'
              when exists (select 1 from bucketq.delivery d
                            where d.group_id = g.group_id and d.topic_id = g.topic_id and d.msg_id = u.id) then 'already_acked'
              else 'stale' end
    from unnest(msg_ids) u(id);
end $$;

create function bucketq._check_locked_args(fn text, g bucketq.consumer_group, msg_ids bigint[], consumer_id text) returns void
language plpgsql as $$
begin
  if msg_ids is null or array_position(msg_ids, null) is not null then
    raise exception '%: msg_ids must be an array without NULL (group %)', fn, g.name
      using errcode = 'BQ005', hint = 'Pass the msg_id of each claimed message, as returned by bucketq.claim_locked.';
  end if;
  if consumer_id is null then
    raise exception '%: lease_tokens => NULL (messages claimed with claim_locked) needs the consumer_id that claimed them (group %)', fn, g.name
      using errcode = 'BQ005',
            hint = 'Pass consumer_id => ''...'', the one given to claim_locked; or pass the lease_tokens that claim returned.';
  end if;
end $$;

-- Locked claims: rows still there and unleased whose bucket this consumer does not own
-- any more: it was fenced (its session expired, the bucket moved).
create function bucketq._raise_if_fenced_locked(fn text, g bucketq.consumer_group, p_msg_ids bigint[], p_consumer text)
returns void
language plpgsql as $$
declare
  v_fenced bigint[];
begin
  select array_agg(i.msg_id order by i.msg_id) into v_fenced
    from bucketq.inbox i
   where i.group_id = g.group_id and i.msg_id = any(p_msg_ids) and i.lease_token is null and i.state in (0, 3)
     and not exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket and o.owner = p_consumer);
  if v_fenced is not null then
    raise exception '%: consumer % no longer owns the buckets of messages % in group % (fenced: the bucket moved to another consumer)',
      fn, p_consumer, v_fenced, g.name
      using errcode = 'BQ008',
            detail = 'Nothing was acked or nacked.',
            hint = 'Roll back: the effects of this transaction must not commit; the new owner delivers these messages. Heartbeat more often than the session timeout, then claim again.';
  end if;
end $$;

drop function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean);

create function bucketq.nack(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  errors text[] default null,
  retry_delay interval default null,
  strict boolean default true,
  consumer_id text default null
) returns table (msg_id bigint, status text, retry_at timestamptz)
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_locked boolean;
  v_held bigint[];
  v_dead bigint[];
  v_dead_errors text[];
  v_stale bigint[];
  v_tails bigint[];
begin
  g := bucketq._group(group_name);
  v_locked := lease_tokens is null;
  if v_locked then
    perform bucketq._check_locked_args('nack', g, msg_ids, nack.consumer_id);
  else
    perform bucketq._check_lease_args('nack', msg_ids, lease_tokens);
  end if;
  if errors is not null and cardinality(errors) <> cardinality(msg_ids) then
    raise exception 'nack: errors has % elements for % messages (group %)', cardinality(errors), cardinality(msg_ids), g.name
      using errcode = 'BQ005', hint = 'Pass one error text per message (NULL elements allowed), or NULL.';
  end if;
  if retry_delay is not null and retry_delay < interval '0' then
    raise exception 'nack: retry_delay must not be negative (got %, group %)', retry_delay, g.name
      using errcode = 'BQ005', hint = 'Pass NULL for the group''s exponential backoff, or a delay >= 0.';
  end if;
  v_now := bucketq._now();

  if v_locked then
    -- A locked row counts its attempt now (a lease counted it when claimed).
    with held as (
      select i.msg_id from bucketq.inbox i
       where i.group_id = g.group_id and i.msg_id = any(msg_ids) and i.lease_token is null and i.state + 0 in (0, 3)
         and exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket and o.owner = nack.consumer_id)
       order by i.key_id, i.msg_id
         for update of i
    ),
    counted as (
      update bucketq.inbox i set attempts = i.attempts + 1
        from held h
       where i.group_id = g.group_id and i.msg_id = h.msg_id
      returning i.msg_id, i.attempts
    )
    select array_agg(c.msg_id),
           array_agg(c.msg_id) filter (where c.attempts >= g.max_attempts),
           array_agg(left(e.err, 10000)) filter (where c.attempts >= g.max_attempts)
      into v_held, v_dead, v_dead_errors
      from counted c
      join unnest(msg_ids, coalesce(errors, array_fill(null::text, array[cardinality(msg_ids)]))) as e(id, err) on e.id = c.msg_id;
  else
    select array_agg(x.msg_id),
           array_agg(x.msg_id) filter (where x.attempts >= g.max_attempts),
           array_agg(left(x.err, 10000)) filter (where x.attempts >= g.max_attempts)
      into v_held, v_dead, v_dead_errors
      from (select i.msg_id, i.attempts, e.err
              from unnest(msg_ids, lease_tokens, errors) as e(id, tok, err)
              join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = e.id and i.lease_token = e.tok and i.state + 0 = 1
             where exists (select 1 from bucketq.bucket_owner o
                            where o.group_id = g.group_id and o.bucket = i.bucket
                              and o.owner = i.consumer_id and o.epoch = i.epoch)
             order by i.key_id, i.msg_id
             for update of i) x;
  end if;

  if coalesce(cardinality(v_held), 0) < cardinality(msg_ids) then
    select array_agg(u.id order by u.id) into v_stale
      from unnest(msg_ids) u(id) where u.id <> all(coalesce(v_held, '{}'));
    if v_locked then
      perform bucketq._raise_if_fenced_locked('nack', g, v_stale, nack.consumer_id);
    else
      perform bucketq._raise_if_fenced('nack', g, msg_ids, lease_tokens);
    end if;
    if strict then
      raise exception 'nack: % of % messages are not % in group % (msg_ids %)',
        cardinality(v_stale), cardinality(msg_ids),
        case when v_locked then 'waiting or ready, unleased' else 'leased with these tokens' end, g.name, v_stale
        using errcode = 'BQ006',
              detail = 'Their lease expired and they were claimed again, or they were already acked or dead-lettered. Nothing was nacked.',
              hint = 'Roll back; the messages will be delivered again. Pass strict => false for a status per message.';
    end if;
  end if;
  if v_held is null then
    return query select u.id, 'stale'::text, null::timestamptz from unnest(msg_ids) u(id);
    return;
  end if;

  -- The rest of each nacked row's run (same key and lease, later key_seq) waits again.
  -- (A locked claim's run was never taken out of waiting.)
  if not v_locked then
    select array_agg(x.msg_id) into v_tails from (
      select x.msg_id
        from bucketq.inbox n
        join bucketq.inbox x on x.group_id = n.group_id and x.key_id = n.key_id
                            and x.lease_token = n.lease_token and x.key_seq > n.key_seq and x.state = 1
       where n.group_id = g.group_id and n.msg_id = any(v_held) and n.key_id is not null
         and x.msg_id <> all(v_held)
       order by x.key_id, x.msg_id
         for update of x) x;
    if v_tails is not null then
      perform bucketq._unlease(g.group_id, v_tails);
    end if;
  end if;

  -- Retry: delayed, and the key stays blocked behind it so order holds. A row with an
  -- earlier row of its key still there waits behind that one (its retry time is kept:
  -- _promote makes it delayed, not ready, when its turn comes).
  update bucketq.inbox i
     set state = case when i.key_id is not null
                       and exists (select 1 from bucketq.inbox y
                                    where y.group_id = i.group_id and y.key_id = i.key_id and y.key_seq < i.key_seq)
                      then 3 else 2 end,
         lease_token = null, last_error = left(e.err, 10000),
         available_at = v_now + coalesce(retry_delay,
                                         least(g.backoff_max, g.backoff_base * power(2, least(i.attempts - 1, 30))))
    from unnest(msg_ids, errors) as e(id, err)
   where i.group_id = g.group_id and i.msg_id = e.id
     and i.msg_id = any(v_held) and i.msg_id <> all(coalesce(v_dead, '{}'));

  if v_dead is not null then
    perform bucketq._dead_letter(g, v_dead, v_dead_errors);
  end if;
  if v_locked then
    delete from bucketq.attempt_log a where a.group_id = g.group_id and a.xact = pg_current_xact_id();
  end if;

  return query
  select u.id,
         case when u.id = any(coalesce(v_dead, '{}')) then 'dead'
              when u.id = any(v_held) then 'retry'
              else 'stale' end,
         (select i.available_at from bucketq.inbox i
           where i.group_id = g.group_id and i.msg_id = u.id and i.state + 0 in (2, 3)
             and u.id = any(v_held))
    from unnest(msg_ids) u(id);
end $$;

comment on function bucketq.ack(text, bigint[], bigint[], text, boolean) is
'Acknowledge claimed messages (arrays: one msg_id and lease_token each). In the caller''s transaction it checks each lease is still held and that its claimer still owns the bucket at the lease''s epoch (else BQ008: fenced, nothing acked), writes the delivery record and makes the key''s next message ready, so effects written in the same transaction commit if and only if the ack does. A key''s messages are acked in key_seq order (see claim''s max_per_key): acking one while an earlier one of its key is still there raises BQ005 and acks nothing. lease_tokens => NULL with consumer_id: messages this transaction holds by claim_locked; the consumer must still own their buckets. strict (default): if any message is not held, raise BQ006 and ack nothing. strict => false: ack what is held; status per message is acked, already_acked or stale.';

comment on function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean, text) is
'Report claimed messages as failed, with an error text each. A message with attempts left is retried after retry_delay (NULL: the group''s backoff, base * 2^(attempt-1) capped at backoff_max) and its key stays blocked meanwhile, so order holds. The rest of its run (see claim''s max_per_key) waits behind it again without counting an attempt. A message whose attempts are spent is dead-lettered: with on_exhausted = skip its key moves on, with block the key waits for replay_dead. lease_tokens => NULL with consumer_id: messages this transaction holds by claim_locked (nack them before commit, in that transaction). Status per message: retry, dead or stale (strict, the default, raises BQ006 instead of reporting stale).';

alter function bucketq.claim_locked(text, text, int, int[], int) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.record_attempt(text, text, xid8, bigint[]) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.ack(text, bigint[], bigint[], text, boolean) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean, text) security definer set search_path = pg_catalog, bucketq, pg_temp;

-- The consumer role gets the new consumer-side functions.
create or replace function bucketq._grant_roles() returns void
language plpgsql as $$
declare
  f record;
  v_producer boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_producer');
  v_consumer boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_consumer');
  v_monitor boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_monitor');
  v_admin boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_admin');
begin
  revoke all on schema bucketq from public;
  revoke all on all tables in schema bucketq from public;   -- views too
  revoke all on all sequences in schema bucketq from public;
  revoke all on all functions in schema bucketq from public;

  if v_producer then
    grant usage on schema bucketq to bucketq_producer;
  end if;
  if v_consumer then
    grant usage on schema bucketq to bucketq_consumer;
    grant select on bucketq.groups to bucketq_consumer;
  end if;
  if v_monitor then
    grant usage on schema bucketq to bucketq_monitor;
    grant execute on function bucketq._now() to bucketq_monitor;
  end if;
  if v_admin then
    grant usage on schema bucketq to bucketq_admin;
    grant execute on function bucketq._now() to bucketq_admin;
  end if;

  -- Functions by name, so every overload of a name is covered.
  for f in
    select p.oid::regprocedure as sig, p.proname::text as name
      from pg_catalog.pg_proc p
     where p.pronamespace = 'bucketq'::regnamespace and p.proname !~ '^_'
  loop
    if v_producer and f.name in ('send', 'send_batch') then
      execute format('grant execute on function %s to bucketq_producer', f.sig);
    end if;
    if v_consumer and f.name in ('join', 'heartbeat', 'leave', 'claim', 'claim_locked', 'record_attempt', 'ack', 'nack', 'maintain') then
      execute format('grant execute on function %s to bucketq_consumer', f.sig);
    end if;
    if v_admin then
      execute format('grant execute on function %s to bucketq_admin', f.sig);
    end if;
  end loop;

  -- Views are the public read side; tables stay private.
  for f in
    select c.oid::regclass as rel from pg_catalog.pg_class c
     where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('v', 'm')
  loop
    if v_monitor then
      execute format('grant select on %s to bucketq_monitor', f.rel);
    end if;
    if v_admin then
      execute format('grant select on %s to bucketq_admin', f.rel);
    end if;
  end loop;

  -- Role memberships are cluster-wide; granting them needs ADMIN on the roles (their
  -- creator has it; a superuser always).
  if v_admin then
    begin
      if v_producer then grant bucketq_producer to bucketq_admin; end if;
      if v_consumer then grant bucketq_consumer to bucketq_admin; end if;
      if v_monitor then grant bucketq_monitor to bucketq_admin; end if;
    exception when insufficient_privilege or invalid_grant_operation then
      raise warning 'bucketq: % may not grant the bucketq roles to bucketq_admin (%)', current_user, sqlerrm
        using hint = 'As a superuser: grant bucketq_producer, bucketq_consumer, bucketq_monitor to bucketq_admin;';
    end;
  end if;
  -- pg_monitor lets vacuum_horizon show every session's query; optional.
  if v_monitor and not pg_catalog.pg_has_role('bucketq_monitor', 'pg_monitor', 'member') then
    begin
      grant pg_monitor to bucketq_monitor;
    exception when insufficient_privilege or invalid_grant_operation then
      raise notice 'bucketq: % may not grant pg_monitor to bucketq_monitor; vacuum_horizon shows other users'' queries only once a superuser does', current_user;
    end;
  end if;
end $$;

select bucketq._grant_roles();

insert into bucketq.migration (version, name) values (14, 'locked_claims');
