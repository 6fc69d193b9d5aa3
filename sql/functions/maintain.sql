create or replace function bucketq.maintain(wait boolean default true)
returns table (topic text, action text, detail text)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  v_oldest timestamptz;
  t bucketq.topic;
  p bucketq.log_partition;
  v_now timestamptz;
  v_groups int[];
  v_max_id bigint;
  v_pruned bigint;
  -- Ours is set local below: the caller's transaction gets its own back at the end.
  v_lock_timeout text := current_setting('lock_timeout');
  v_pending boolean;
  v_floor timestamptz;
  v_edge record;
begin
  -- One maintainer at a time; a concurrent caller waits, then finds nothing to do
  -- (or, with wait => false, returns at once: how workers call it periodically).
  if wait then
    perform bucketq._lock_maintenance('maintain');
  elsif not pg_try_advisory_xact_lock(bucketq._lock_ns(), 0) then
    return;
  end if;
  v_now := bucketq._now();
  for t in select * from bucketq.topic order by topic_id loop
    if bucketq._ensure_partitions(t) > 0 then
      topic := t.name; action := 'created_partitions'; detail := 'partitions up to ' || (date_bin(t.partition_interval, v_now, timestamptz '2000-01-01 00:00:00+00') + t.partition_interval * (bucketq._partitions_ahead(t.partition_interval) + 1))::text;
      return next;
    end if;

    for p in select * from bucketq.log_partition
             where topic_id = t.topic_id and upper_bound <= v_now - t.retention
             order by lower_bound loop
      begin
        -- Lock first, then check: a producer still inserting into this partition
        -- commits (with its inbox rows) before we look.
        set local lock_timeout = '5s';
        execute format('lock table bucketq.%I in access exclusive mode', p.message_rel);
        execute format('select max(id) from bucketq.%I', p.message_rel) into v_max_id;
        -- The groups, read after the lock: a group created (from 'earliest') while we
        -- waited committed its rows of this partition before we got it (issue 13,
        -- item 11).
        select array_agg(group_id) into v_groups from bucketq.consumer_group where topic_id = t.topic_id;
        v_pending := false;
        -- Every group must be done: no un-acked, un-skipped row at or below the
        -- partition's last id (ids grow with time, so this is conservative).
        -- And no message of the partition still ahead of a group's checkpoint in its
        -- bucket's log (or in the batch under way there).
        if v_max_id is not null then
          v_pending := bucketq._log_pending(t, p.lower_bound, p.upper_bound);
        end if;
        if v_pending or (v_max_id is not null and exists (
             select 1 from bucketq.inbox i
             where i.group_id = any(coalesce(v_groups, '{}')) and i.msg_id <= v_max_id)) then
          topic := t.name; action := 'kept_partition'; detail := p.message_rel || ': expired but not yet consumed by every group';
          return next;
          continue;
        end if;
        execute format('drop table bucketq.%I', p.message_rel);
        execute format('drop table bucketq.%I', p.delivery_rel);
        delete from bucketq.dead_letter d
         where d.group_id = any(coalesce(v_groups, '{}')) and d.sent_at < p.upper_bound and d.sent_at >= p.lower_bound;
        delete from bucketq.log_partition where topic_id = p.topic_id and lower_bound = p.lower_bound;
        topic := t.name; action := 'dropped_partition'; detail := p.message_rel;
        return next;
      exception when lock_not_available then
        topic := t.name; action := 'kept_partition'; detail := p.message_rel || ': busy (lock timeout); retried on the next run';
        return next;
      end;
    end loop;

    -- Progress rows from before the oldest partition still kept, but each bucket's
    -- latest: they can only record messages that are gone, so the delivery records of
    -- batches go with the messages they record.
    select array_agg(group_id) into v_groups from bucketq.consumer_group where topic_id = t.topic_id;
    v_oldest := coalesce((select min(p.lower_bound) from bucketq.log_partition p where p.topic_id = t.topic_id),
                         v_now - t.retention);
    -- Found by index, so that a run reads about the rows it prunes, never the table
    -- (a delete by created_at alone read all of it at every run: only 'done' rows have
    -- an index by time, progress_done). Per bucket, its newest 'done' row from before
    -- v_oldest (read through progress_done); the rows before it, of every kind, are
    -- superseded by it: deleted through the primary key. That row itself goes once a
    -- later one is old too.
    for v_edge in select d.group_id, d.bucket, max(d.seq) as seq from bucketq.progress d
                   where d.group_id = any(coalesce(v_groups, '{}')) and d.kind = 1 and d.created_at < v_oldest
                   group by d.group_id, d.bucket loop
      delete from bucketq.progress x
       where x.group_id = v_edge.group_id and x.bucket = v_edge.bucket and x.seq < v_edge.seq
         and x.created_at < v_oldest;
    end loop;
    -- (the latest ones stay as checkpoints, without their expired delivery records)
    update bucketq.progress x set msg_ids = '{}'
     where x.group_id = any(coalesce(v_groups, '{}')) and x.created_at < v_oldest
       and x.kind = 1 and x.msg_ids <> '{}';

    delete from bucketq.idempotency i where i.topic_id = t.topic_id and i.sent_at < v_now - t.retention;
    get diagnostics v_pruned = row_count;
    if v_pruned > 0 then
      topic := t.name; action := 'pruned_idempotency_keys'; detail := v_pruned::text;
      return next;
    end if;
  end loop;

  -- The logs' floors (topic.log_from), last: moving one holds the topic's producers back
  -- until we commit. Up to the end of the oldest partitions that every group has passed
  -- (_log_pending), found first without waiting for anyone; then, holding the producer
  -- lock exclusively (each send holds it shared until its transaction ends: every
  -- message sent so far is committed and visible), found again and moved. A send then
  -- reads the new floor after taking that lock and never sends below it; claims read the
  -- group's copy, and do not open the partitions below it.
  for t in select * from bucketq.topic order by topic_id loop
    if bucketq._log_floor_reach(t, v_now) > t.log_from then
      begin
        -- In turns of 50 ms (sends wait no longer than that), for at most 500 ms. (A
        -- send that waits for a missing partition's creation, lock 0, which we hold,
        -- while holding its producer lock, then waits for our transaction, not we for
        -- it; it waits in turns too, see _lock_maintenance.)
        set local lock_timeout = '500ms';
        perform bucketq._lock_topic_producers('maintain', t);
        v_floor := bucketq._log_floor_reach(t, v_now);
        if v_floor > t.log_from then
          update bucketq.topic x set log_from = v_floor where x.topic_id = t.topic_id;
          topic := t.name; action := 'raised_log_floor'; detail := 'claims read the log from ' || v_floor::text;
          return next;
        end if;
      exception when lock_not_available then
        topic := t.name; action := 'kept_log_floor'; detail := 'producers in flight (lock timeout); retried on the next run';
        return next;
      end;
    end if;
    update bucketq.consumer_group g set log_from = x.log_from
      from bucketq.topic x
     where x.topic_id = t.topic_id and g.topic_id = t.topic_id and g.log_from < x.log_from;
  end loop;

  -- The per-key counters, for all topics at once: fold the retired part into the base,
  -- TRUNCATE it and point every topic at it (holding producers back for the last step
  -- only, at most 500 ms). Never a DELETE per row.
  return query select * from bucketq._rotate_key_counters();
  -- The heartbeats, likewise: the part of the five minutes before is emptied by TRUNCATE.
  return query select * from bucketq._rotate_consumer_beats(v_now);
  perform set_config('lock_timeout', v_lock_timeout, true);
end $$;

comment on function bucketq.maintain(boolean) is
'Housekeeping, safe to call concurrently (callers serialise on an advisory lock; wait => false returns at once if another caller is at it; workers call it so every minute): creates log partitions ahead of time, drops partitions whose retention has passed and whose messages every group has acked or dead-lettered (whole partitions, never row DELETEs on the log), prunes expired idempotency keys, raises each topic''s log floor (topic.log_from) past the partitions every group has passed, so that claims no longer read them (waiting up to 500 ms for the topic''s producers in flight), rotates the per-key counters (bucketq.key_counter: folds the part no topic appends to into key_counter_base, TRUNCATEs it and points every topic at it; one row with topic NULL) and empties the heartbeats of the five minutes before (bucketq.consumer_beat, TRUNCATE; one row with topic NULL). Returns one row per action taken.';
