-- The rotation of the heartbeats (migration 39), as the per-key counters rotate: the
-- part of the previous five minutes is emptied by TRUNCATE, never row by row.
--
-- Heartbeats go to the part of their five-minute period (_beat_part); this runs in the
-- second half of a period, when the other part holds only beats from before it started
-- (or a late writer's whose transaction began then). A consumer that beats more often
-- than every 2.5 minutes has a newer beat in the current part by then, and loses nothing.
-- Any other's newest beat in the retired part is copied to its bucketq.consumer row
-- first (one row version per quiet consumer per rotation, not one per heartbeat), so its
-- heartbeat (bucketq._consumer_now) does not move back.
--
-- The part is locked first (ACCESS EXCLUSIVE, waiting at most 500 ms: claims, settles
-- and heartbeats read it), so no beat lands in it between the copy and the TRUNCATE;
-- readers lock it when their statement is planned, before its snapshot, so they see
-- the copy and the empty part together or neither. On a lock timeout nothing changes
-- and the next run retries. Either outcome is recorded in bucketq.rotation (view
-- bucketq.rotations). The caller holds maintain()'s lock.
create or replace function bucketq._rotate_consumer_beats(p_now timestamptz)
returns table (topic text, action text, detail text)
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  v_retired text := 'consumer_beat_' || (1 - bucketq._beat_part(p_now));
  v_kept text := 'consumer_beat_' || bucketq._beat_part(p_now);
  v_rows boolean;
  v_copied bigint;
  v_saved text := current_setting('lock_timeout');
begin
  -- The first half of the period: beats of live consumers may still be only there.
  if extract(epoch from p_now)::numeric % 300 < 150 then
    return;
  end if;
  -- By name: once a minute at most, so dynamic SQL costs nothing that matters.
  execute format('select exists (select 1 from bucketq.%I)', v_retired) into v_rows;
  if not v_rows then
    return;
  end if;
  begin
    perform set_config('lock_timeout', '500ms', true);
    execute format('lock table bucketq.%I in access exclusive mode', v_retired);
    execute format($f$
      update bucketq.consumer c set heartbeat_at = r.beat_at
        from (select b.group_id, b.consumer_id, max(b.beat_at) as beat_at from bucketq.%I b group by 1, 2) r
       where c.group_id = r.group_id and c.consumer_id = r.consumer_id and c.heartbeat_at < r.beat_at
         and not exists (select 1 from bucketq.%I k
                          where k.group_id = c.group_id and k.consumer_id = c.consumer_id and k.beat_at >= r.beat_at)$f$,
      v_retired, v_kept);
    get diagnostics v_copied = row_count;
    execute format('truncate bucketq.%I', v_retired);
    perform set_config('lock_timeout', v_saved, true);
    topic := null;
    action := 'rotated_consumer_beats';
    detail := format('bucketq.%s emptied; the newest beat of %s quiet consumer(s) kept on their rows', v_retired, v_copied);
  exception when lock_not_available then
    topic := null;
    action := 'kept_consumer_beats';
    detail := format('readers of bucketq.%s in flight (lock timeout); retried on the next run', v_retired);
  end;
  perform bucketq._record_rotation('consumer_beat', action = 'rotated_consumer_beats', detail, p_now);
  return next;
end $$;

comment on function bucketq._rotate_consumer_beats(timestamptz) is
'For maintain(), holding its lock: in the second half of a five-minute period, empties the part of bucketq.consumer_beat of the period before (TRUNCATE, after copying the newest beat of each consumer with no newer one to its bucketq.consumer row), waiting at most 500 ms for its lock. Records a rotation done or given up in bucketq.rotation (view bucketq.rotations). Returns one row (topic NULL): rotated_consumer_beats, or kept_consumer_beats on a lock timeout; none when there is nothing to do.';
