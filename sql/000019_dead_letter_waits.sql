-- bucketq 000019: a dead letter's promotion waits for whoever is changing the key's next
-- row, as an ack's does since 000015. A dead-lettered head (skip policy) is removed and
-- the key's next row promoted. If another transaction was at the same moment handing
-- that row back (the tail of the same expired run, taken by a second claimer of the
-- consumer or by a rebalance), each saw the other's row as it was before: the dead
-- letter found the tail still leased (nothing to promote), the hand-back found the head
-- still there (the tail must wait), and the key was left waiting with nothing ahead of
-- it, for ever. Now the dead letter locks the key's lowest row first (FOR NO KEY UPDATE,
-- which producers' FOR KEY SHARE checks do not wait for) and promotes in the next
-- statement, with a snapshot that includes the hand-back. Replay and rewind keep
-- _promote as it is: before promoting they lock the keys' rows that are not waiting
-- (replay) or all of the group's rows (rewind), so no hand-back runs beside them.

create or replace function bucketq._dead_letter(g bucketq.consumer_group, p_msg_ids bigint[], p_errors text[]) returns void
language plpgsql as $$
declare
  v_now timestamptz := bucketq._now();
  v_keys bigint[];
begin
  insert into bucketq.dead_letter as d (group_id, msg_id, topic_id, sent_at, bucket, key_id, key_seq, attempts, last_error, dead_at)
  select i.group_id, i.msg_id, g.topic_id, i.sent_at, i.bucket, i.key_id, i.key_seq, i.attempts, e.err, v_now
    from unnest(p_msg_ids, p_errors) as e(msg_id, err)
    join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = e.msg_id
  on conflict (group_id, msg_id) do update
     set attempts = excluded.attempts, last_error = excluded.last_error, dead_at = excluded.dead_at, replayed_at = null;

  if g.on_exhausted = 'skip' then
    with gone as (
      delete from bucketq.inbox i
       where i.group_id = g.group_id and i.msg_id = any(p_msg_ids)
      returning i.key_id
    )
    select array_agg(distinct gone.key_id) filter (where gone.key_id is not null) into v_keys from gone;
    if v_keys is not null then
      -- Wait for whoever is changing a key's next row, then promote in a new statement,
      -- which sees what they committed.
      perform 1 from unnest(v_keys) as k(key_id)
        cross join lateral (select x.msg_id from bucketq.inbox x
                             where x.group_id = g.group_id and x.key_id = k.key_id
                             order by x.key_seq limit 1
                               for no key update) h;
      perform bucketq._promote(g.group_id, v_keys, v_now);
    end if;
  else
    update bucketq.inbox i
       set state = 4, lease_token = null, available_at = null,
           last_error = e.err
      from unnest(p_msg_ids, p_errors) as e(msg_id, err)
     where i.group_id = g.group_id and i.msg_id = e.msg_id;
  end if;
end $$;

insert into bucketq.migration (version, name) values (19, 'dead_letter_waits');
