-- reject: a failure that no retry can fix (a payload its consumer cannot read) goes to
-- the dead letters at once instead of using up the group's max_attempts.
--
-- It does not restate nack's checks: it spends the remaining attempts of the messages
-- the caller holds (by nack's own predicates: the lease with its token and the bucket
-- epoch, or the claim_locked lock with the bucket owner), then calls bucketq.nack, which
-- checks the lease or lock itself and dead-letters them, since no attempt is left. The
-- dead letter records the attempts really made. Should nack not dead-letter every
-- message whose attempts were spent here, the whole call is undone.
create or replace function bucketq.reject(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  errors text[] default null,
  strict boolean default true,
  consumer_id text default null
) returns table (msg_id bigint, status text, retry_at timestamptz)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_locked boolean := lease_tokens is null;
  v_ids bigint[];
  v_attempts int[];
  v_result record;
  v_results bigint[] := '{}';
  v_statuses text[] := '{}';
  v_retry timestamptz[] := '{}';
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('reject', g);
  end if;
  if v_locked then
    perform bucketq._check_locked_args('reject', g, msg_ids, reject.consumer_id);
  else
    perform bucketq._check_lease_args('reject', msg_ids, lease_tokens);
  end if;

  -- Messages handed out from the log: their batch moves to the inbox first (as nack
  -- does), so that the attempts below can be spent on inbox rows.
  perform bucketq._log_settle('reject', g, msg_ids, lease_tokens, null, reject.consumer_id, bucketq._now());

  -- The messages the caller holds, locked in nack's order, with their attempts so far.
  if v_locked then
    select array_agg(h.msg_id), array_agg(h.attempts) into v_ids, v_attempts from (
      select i.msg_id, i.attempts from bucketq.inbox i
       where i.group_id = g.group_id and i.msg_id = any(msg_ids) and i.lease_token is null and i.state + 0 in (0, 3)
         -- rows this transaction holds (claim_locked), or put in the inbox from its log
         -- batch, as nack takes them: our lock below would make any other row look held
         -- to nack, which would then dead-letter a message no one claimed
         and (bucketq._xact_holds(pg_current_xact_id(), i.xmax) or bucketq._inserted_here(i.xmin))
         and exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket and o.owner = reject.consumer_id)
       order by i.key_id, i.msg_id
         for update of i) h;
    -- nack counts a locked message's attempt itself: leave it one.
    update bucketq.inbox i set attempts = greatest(i.attempts, g.max_attempts - 1)
     where i.group_id = g.group_id and i.msg_id = any(coalesce(v_ids, '{}'));
  else
    select array_agg(h.msg_id), array_agg(h.attempts) into v_ids, v_attempts from (
      select i.msg_id, i.attempts
        from unnest(msg_ids, lease_tokens) as e(id, tok)
        join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = e.id and i.lease_token = e.tok and i.state + 0 = 1
       where exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket
                        and o.owner = i.consumer_id and o.epoch = i.epoch)
       order by i.key_id, i.msg_id
         for update of i) h;
    update bucketq.inbox i set attempts = greatest(i.attempts, g.max_attempts)
     where i.group_id = g.group_id and i.msg_id = any(coalesce(v_ids, '{}'));
  end if;

  for v_result in
    select n.msg_id, n.status, n.retry_at
      from bucketq.nack(group_name => reject.group_name, msg_ids => reject.msg_ids, lease_tokens => reject.lease_tokens,
                        errors => reject.errors, strict => reject.strict, consumer_id => reject.consumer_id) n
  loop
    if v_result.msg_id = any(coalesce(v_ids, '{}')) and v_result.status <> 'dead' then
      raise exception 'reject: nack did not dead-letter message % of group % (status %)', v_result.msg_id, g.name, v_result.status
        using errcode = 'XX000', hint = 'A bug in bucketq: report it. Nothing was changed.';
    end if;
    msg_id := v_result.msg_id;
    status := v_result.status;
    retry_at := v_result.retry_at;
    return next;
  end loop;

  -- The dead letters record the attempts made, not the ones spent above.
  if v_ids is not null then
    update bucketq.dead_letter d
       set attempts = a.attempts + case when v_locked then 1 else 0 end
      from unnest(v_ids, v_attempts) as a(id, attempts)
     where d.group_id = g.group_id and d.msg_id = a.id;
  end if;
end $$;

comment on function bucketq.reject(text, bigint[], bigint[], text[], boolean, text) is
'Fail claimed messages for good: dead-letter them at once with an error text each, whatever attempts the group''s max_attempts would leave (a payload the consumer cannot read will not get better). Same arguments, checks and statuses as nack (it calls nack after spending the messages'' remaining attempts); the dead letters record the attempts really made. lease_tokens => NULL with consumer_id: messages this transaction holds by claim_locked. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could settle a lease that expired or moved since, and record its messages as delivered twice).';
