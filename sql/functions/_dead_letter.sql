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
