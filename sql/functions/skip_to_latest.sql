-- The opposite of rewind: everything the group has not finished yet counts as done.
create or replace function bucketq.skip_to_latest(group_name text) returns bigint
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_now timestamptz := bucketq._now();
  v_count bigint;
  v_pos bucketq.progress[];
  v_skipped bigint;
  s record;
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('skip_to_latest', g);
  end if;
  select * into t from bucketq.topic where topic_id = g.topic_id;
  -- Void every lease of the group (epochs bump, so an ack under an old lease fails) and
  -- wait for acks and locked claims under way. Producers go on sending (see below).
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  update bucketq.bucket_owner o set epoch = o.epoch + 1, moved_at = v_now
   where o.group_id = g.group_id and o.owner is distinct from '';
  -- Cursors before inbox rows, as ack, nack and reject take them (see rewind).
  perform 1 from bucketq.cursor k where k.group_id = g.group_id order by k.bucket for update;
  perform 1 from bucketq.inbox i where i.group_id = g.group_id order by i.key_id, i.msg_id for update;

  -- Dead letters blocking their key stay dead letters; everything else is recorded as
  -- done by nobody (consumer_id NULL) with the attempts made so far.
  insert into bucketq.delivery (group_id, topic_id, msg_id, sent_at, attempt, consumer_id, epoch, acked_at)
  select g.group_id, g.topic_id, i.msg_id, i.sent_at, i.attempts, null, null, v_now
    from bucketq.inbox i
   where i.group_id = g.group_id and i.state <> 4
  on conflict do nothing;
  get diagnostics v_count = row_count;
  delete from bucketq.inbox i where i.group_id = g.group_id;

  -- The buckets' logs (their cursors are ours: no locked batch reads them now): a 'done'
  -- row per bucket at a new snapshot s, whose delivery record (consumer NULL) is what was
  -- still ahead of its checkpoint or handed out in a batch under way, of the messages
  -- visible in s. Read in one pass over the log for all buckets (_log_unacked_query).
  --
  -- s is taken first, and the log read by a later statement, whose own snapshot sees
  -- everything s does (READ COMMITTED, the only level it runs in).
  -- A message committed in between is left out by the visibility test and, not being
  -- visible in s, delivered after the new position, as any message sent after the skip.
  -- So producers need not wait: they used to, for the whole skip (38 s for 10.7 million
  -- messages, most of it the delivery record's GIN index).
  v_pos := bucketq._log_positions(g.group_id, t.buckets, false);
  if v_pos is not null then
    s := bucketq._log_snapshot();
    execute format(
      $q$with ahead as (
           select u.bucket, array_agg(u.id) as ids
             from (%s) u
            where pg_visible_in_snapshot(u.xid, $5)
              and not exists (select 1 from bucketq.delivery d
                               where d.group_id = $2 and d.topic_id = $3 and d.msg_id = u.id)
            group by u.bucket
         ),
         done as (
           insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, pos_ord, pos_id, msg_ids, created_at)
           select $2, c.bucket, 1, $5, $6, $5, $6, $7, 0, 0, coalesce(a.ids, '{}'), $4
             from unnest($1::bucketq.progress[]) c
             left join ahead a on a.bucket = c.bucket
           returning cardinality(msg_ids) as n
         )
         select coalesce(sum(n), 0) from done$q$,
      bucketq._log_unacked_query(g.topic_id, v_pos, t.buckets, g.start_time))
      into v_skipped using v_pos, g.group_id, g.topic_id, v_now, s.snap, s.floor, s.ceil;
    v_count := v_count + v_skipped;
  end if;
  return v_count;
end $$;

comment on function bucketq.skip_to_latest(text) is
'Skip a group''s backlog (like kafka-consumer-groups --reset-offsets --to-latest): every message it has not finished yet (ready, in flight, in backoff, waiting, not yet due) is recorded as done without being handled (a delivery record with consumer_id NULL), dead letters holding their key are released, and in-flight leases become void. Messages sent afterwards, or committed while it runs, are delivered as usual; producers do not wait for it. Returns how many messages were skipped. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could miss batches acked while it waited for them, and record their messages as skipped beside their delivery).';
