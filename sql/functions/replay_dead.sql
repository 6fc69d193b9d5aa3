create or replace function bucketq.replay_dead(group_name text, msg_ids bigint[] default null) returns int
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_ids bigint[];
  v_keys bigint[];
  v_buckets int[];
  v_missing bigint[];
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('replay_dead', g);
  end if;
  -- Lock the dead letters first (in id order): a replay running beside us is waited
  -- for, and what it replayed (replayed_at set) is then left alone, not put back a
  -- second time after it was acked (issue 13, item 12).
  select array_agg(d.msg_id), array_agg(distinct d.key_id) filter (where d.key_id is not null),
         array_agg(distinct d.bucket) filter (where d.key_id is not null)
    into v_ids, v_keys, v_buckets
    from (select d.msg_id, d.key_id, d.bucket from bucketq.dead_letter d
           where d.group_id = g.group_id and d.replayed_at is null
             and (msg_ids is null or d.msg_id = any(msg_ids))
           order by d.msg_id
             for update) d;
  if msg_ids is not null then
    select array_agg(u.id) into v_missing from unnest(msg_ids) u(id) where u.id <> all(coalesce(v_ids, '{}'));
    if v_missing is not null then
      raise exception 'replay_dead: messages % are not dead letters of group % (or were replayed already)', bucketq._id_list(v_missing), g.name
        using errcode = 'BQ005', hint = 'List them with: select msg_id from bucketq.dead_letters where group_name = ...; nothing was replayed.';
    end if;
  end if;
  if v_ids is null then
    return 0;
  end if;

  -- Hold back producers of these keys while we put old messages back in front (in key
  -- order, as producers lock them: no deadlock with a send of several keys), and
  -- wait for acks in flight on them: the promotion below then sees the final state.
  perform 1 from bucketq.topic_key k where k.key_id = any(coalesce(v_keys, '{}')) order by k.key for update;
  -- and wait for whoever settles a batch from these keys' buckets' logs (ack, nack,
  -- expiry, a locked batch until it ends: they hold the bucket's cursor row FOR UPDATE).
  -- A batch's messages left unacked go to the inbox, ready unless an earlier row of
  -- their key is there; one settled beside us could not see our rows yet, and made a
  -- later message of a key ready beside the replayed one: two heads of one key, which
  -- one claim handed out together and a locked ack then refused as out of order.
  -- Cursor rows before inbox rows, the order everyone takes them in; claims that read
  -- the log skip these buckets (SKIP LOCKED) until we commit, and then see our rows.
  perform 1 from bucketq.cursor c
   where c.group_id = g.group_id and c.bucket = any(coalesce(v_buckets, '{}'))
   order by c.bucket
     for key share;
  perform 1 from bucketq.inbox i
   where i.group_id = g.group_id and i.key_id = any(coalesce(v_keys, '{}')) and i.state <> 3
   order by i.key_id, i.msg_id
     for update;

  -- block policy: the dead row is still in the inbox, holding its key.
  update bucketq.inbox i
     set state = 3, attempts = 0, lease_token = null, available_at = null
   where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state = 4;
  -- skip policy: the row was removed; put it back.
  insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at, attempts, last_error)
  select d.group_id, d.msg_id, d.bucket, case when d.key_id is null then 0 else 3 end,
         d.key_id, d.key_seq, d.sent_at, null, 0, d.last_error
    from bucketq.dead_letter d
   where d.group_id = g.group_id and d.msg_id = any(v_ids)
     -- never a message the group acked (guarantee 1)
     and not exists (select 1 from bucketq.delivery x
                      where x.group_id = d.group_id and x.topic_id = g.topic_id and x.msg_id = d.msg_id and x.sent_at = d.sent_at)
  on conflict (group_id, msg_id) do nothing;
  -- Later messages of these keys that are not in flight step back behind the replayed ones.
  update bucketq.inbox i set state = 3
   where i.group_id = g.group_id and i.key_id = any(coalesce(v_keys, '{}'))
     and i.state in (0, 2) and i.msg_id <> all(v_ids);
  -- unkeyed rows from the block policy are ready at once.
  update bucketq.inbox i set state = 0
   where i.group_id = g.group_id and i.msg_id = any(v_ids) and i.state = 3 and i.key_id is null;

  update bucketq.dead_letter d set replayed_at = bucketq._now()
   where d.group_id = g.group_id and d.msg_id = any(v_ids);

  if v_keys is not null then
    perform bucketq._promote(g.group_id, v_keys, bucketq._now(), true);
  end if;
  perform pg_notify('bucketq', (select name from bucketq.topic where topic_id = g.topic_id));
  return cardinality(v_ids);
end $$;

comment on function bucketq.replay_dead(text, bigint[]) is
'Put dead letters of a group back (all of them, or the given msg_ids) with their attempts reset. Keyed messages rejoin their key in key_seq order: they are delivered before any later message of the key that is not yet in flight. Returns how many were replayed; unknown ids raise BQ005 and replay nothing. Runs only in READ COMMITTED transactions (BQ005 in any other: it waits for the acks of its keys, then must see them).';
