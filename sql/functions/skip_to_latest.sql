-- The opposite of rewind: everything the group has not finished yet counts as done.
create or replace function bucketq.skip_to_latest(group_name text) returns bigint
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz := bucketq._now();
  v_count bigint;
begin
  g := bucketq._group(group_name);
  -- As rewind: hold producers back, void every lease of the group (epochs bump, so an
  -- ack under an old lease fails) and wait for acks and locked claims under way.
  perform pg_advisory_xact_lock(bucketq._lock_ns(), g.topic_id);
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  update bucketq.bucket_owner o set epoch = o.epoch + 1, moved_at = v_now
   where o.group_id = g.group_id and o.owner is distinct from '';
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
  return v_count;
end $$;

comment on function bucketq.skip_to_latest(text) is
'Skip a group''s backlog (like kafka-consumer-groups --reset-offsets --to-latest): every message it has not finished yet (ready, in flight, in backoff, waiting, not yet due) is recorded as done without being handled (a delivery record with consumer_id NULL), dead letters holding their key are released, and in-flight leases become void. Messages sent afterwards are delivered as usual. Producers of the topic wait while it runs. Returns how many messages were skipped.';
