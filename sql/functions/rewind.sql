-- rewind voids every lease of the group: with runs, a tail waits behind its head.
create or replace function bucketq.rewind(group_name text, to_time timestamptz) returns int
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_oldest timestamptz;
  v_count int;
  v_keys bigint[];
  v_leased bigint[];
  v_pos bucketq.progress[];
  s record;
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('rewind', g);
  end if;
  select * into t from bucketq.topic where topic_id = g.topic_id;
  if to_time is null or not isfinite(to_time) then
    raise exception 'rewind: to_time must be a finite time, not % (group %)', coalesce(to_time::text, 'NULL'), g.name
      using errcode = 'BQ005', hint = 'Pass the time to replay from, e.g. now() - interval ''1 hour''.';
  end if;
  select min(p.lower_bound) into v_oldest from bucketq.log_partition p where p.topic_id = t.topic_id;
  -- Refuse only when retention has dropped a partition the topic had: a topic created at
  -- 00:00:07 has its first partition from 00:00, and a rewind to 23:00 the day before
  -- loses nothing.
  if to_time < v_oldest and v_oldest > t.created_at then
    raise exception 'rewind: % is before the oldest retained message time % of topic %', to_time, v_oldest, t.name
      using errcode = 'BQ005', hint = format('Messages older than the retention (%s) are gone; rewind to %s or later.', t.retention, v_oldest);
  end if;

  -- Void every lease of the group (epochs bump, so an ack under an old lease fails), and
  -- wait for acks already under way. Producers go on sending (see s below).
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  update bucketq.bucket_owner o set epoch = o.epoch + 1, moved_at = bucketq._now() where o.group_id = g.group_id;
  -- Wait for locked batches reading the buckets' logs and for acks settling them, then
  -- lock the inbox: cursors before inbox rows, the order in which ack, nack and reject
  -- take them (_log_settle). The other way round, a locked batch holding its cursor and
  -- then locking inbox rows on ack deadlocked with the rewind (1 random run in 6).
  perform 1 from bucketq.cursor k where k.group_id = g.group_id order by k.bucket for update;
  perform 1 from bucketq.inbox i where i.group_id = g.group_id order by i.key_id, i.msg_id for update;
  -- What is still ahead in the buckets' logs (or in a batch under way) goes to the inbox,
  -- and every bucket's checkpoint moves to a snapshot s of now: from here the group reads
  -- its backlog from the inbox, in key order, and new messages from the log.
  -- (In one pass over the log for all buckets: _log_unacked_query.)
  --
  -- s is taken before the log is read, by later statements whose snapshots see everything
  -- s sees (READ COMMITTED, the only level rewind runs in: each statement's snapshot is
  -- taken after the locks above, and sees the acks they waited for), and
  -- only messages visible in s go to the inbox, here and below. One that commits after s
  -- stays in the log, past the new checkpoint, and is delivered from there (behind its
  -- key's messages in the inbox), as anything sent after the rewind. Producers used to be
  -- held back for the whole rewind instead, to keep its reads and s in step.
  s := bucketq._log_snapshot();
  v_pos := bucketq._log_positions(g.group_id, t.buckets, false);
  if v_pos is not null then
    execute format(
      $q$insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at)
         select $2, m.id, m.bucket, case when m.key_id is not null then 3 when m.not_before > bucketq._now() then 2 else 0 end,
                m.key_id, m.key_seq, m.sent_at, m.not_before
           from (%s) m
          where m.sent_at < $3 and pg_visible_in_snapshot(m.xid, $4)
         on conflict (group_id, msg_id) do nothing$q$,
      bucketq._log_unacked_query(t.topic_id, v_pos, t.buckets, g.start_time))
      using v_pos, g.group_id, to_time, s.snap;
  end if;
  insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, pos_ord, pos_id, created_at)
  select g.group_id, b, 1, s.snap, s.floor, s.snap, s.floor, s.ceil, 0, 0, bucketq._now()
    from generate_series(0, t.buckets - 1) b;
  -- The batches' delivery records lose the messages delivered again.
  update bucketq.progress p
     set msg_ids = array(select u.id from unnest(p.msg_ids) u(id)
                          where not exists (select 1 from bucketq.message m
                                             where m.topic_id = t.topic_id and m.id = u.id and m.sent_at >= to_time))
   where p.group_id = g.group_id and p.kind = 1 and p.msg_ids <> '{}' and p.created_at >= to_time;

  -- Forget the group's progress from to_time on, then put those messages back in key order.
  delete from bucketq.delivery d where d.group_id = g.group_id and d.topic_id = t.topic_id and d.sent_at >= to_time;
  update bucketq.dead_letter d set replayed_at = bucketq._now()
   where d.group_id = g.group_id and d.sent_at >= to_time and d.replayed_at is null;
  delete from bucketq.inbox i where i.group_id = g.group_id and i.sent_at >= to_time;
  insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at)
  select g.group_id, m.id, m.bucket,
         case when m.key_id is not null then 3 when m.not_before > bucketq._now() then 2 else 0 end,
         m.key_id, m.key_seq, m.sent_at, m.not_before
    from bucketq.message m
   where m.topic_id = t.topic_id and m.sent_at >= to_time and pg_visible_in_snapshot(m.xid, s.snap);
  get diagnostics v_count = row_count;

  -- Leases of older messages still in flight are void too: hand them out again.
  select array_agg(i.msg_id) into v_leased from bucketq.inbox i where i.group_id = g.group_id and i.state = 1;
  if v_leased is not null then
    perform bucketq._unlease(g.group_id, v_leased);
  end if;
  select array_agg(distinct i.key_id) into v_keys from bucketq.inbox i
   where i.group_id = g.group_id and i.key_id is not null and i.state = 3;
  if v_keys is not null then
    perform bucketq._promote(g.group_id, v_keys, bucketq._now(), true);
  end if;
  perform pg_notify('bucketq', t.name);
  return v_count;
end $$;

comment on function bucketq.rewind(text, timestamptz) is
'Replay a group from a point in time within retention: every message sent at or after to_time is delivered to the group again, in per-key order, as if it had never been processed (its delivery records from then on are removed, dead letters from then on marked replayed). In-flight leases of the group become void (epochs bump). Producers of the topic do not wait for it: what commits while it runs is delivered after the replayed messages of its key. Returns how many messages will be delivered again. Other groups are not affected. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could miss batches acked while it waited for them, and deliver their messages again).';
