-- Count the attempts of locked claims whose transaction ended without committing: one
-- more attempt for each message listed that is still the next of its key (rows the
-- caller holds count too: its own locks do not make it skip them). A message locked by
-- another transaction right now stays listed for a later call; if that one commits its
-- ack, the message is gone and only its delivery record's attempt number is one short.
-- A row whose transaction id is not assigned yet (a "future" one, or unknown: too old)
-- counts nothing and is dropped. Returns how many messages it dead-lettered.
create or replace function bucketq._settle_attempts(g bucketq.consumer_group) returns int
language plpgsql as $$
declare
  v_dead int := 0;
  r record;
  v_counted bigint[];
  v_exhausted bigint[];
  v_rest bigint[];
begin
  for r in
    select a.xact, a.msg_ids, a.consumer_id, bucketq._xact_status(a.xact) as status
      from bucketq.attempt_log a
     where a.group_id = g.group_id and bucketq._xact_status(a.xact) is distinct from 'in progress'
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
