-- A worker's first step in firing schedules (see _fire_schedules): the due schedules of
-- its group's topic, locked for this transaction. SKIP LOCKED: a schedule another worker
-- is firing now is left to it. The worker computes each one's next slot from cron and
-- timezone (Postgres does not parse cron) and passes it to _fire_schedules in the same
-- transaction. Returns the database clock too (bucketq._now()), which the next slot
-- must lie after.
create or replace function bucketq._due_schedules(group_name text, max_schedules int default 100)
returns table (schedule_name text, cron text, timezone text, slot timestamptz, db_now timestamptz)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group := bucketq._group(group_name);
  v_now timestamptz := bucketq._now();
begin
  return query
    select s.name, s.cron, s.timezone, s.next_at, v_now
      from bucketq.schedule s
     where s.topic_id = g.topic_id
       and not s.paused
       and ((s.next_at is null and s.last_error is null) or s.next_at <= v_now)
     order by s.next_at nulls first, s.name
     limit greatest(coalesce(max_schedules, 100), 1)
       for update of s skip locked;
end $$;

comment on function bucketq._due_schedules(text, int) is
'Workers only: lock (FOR UPDATE SKIP LOCKED) and return the due schedules of the group''s topic (next_at passed, or NULL: not yet computed) with the database clock; the caller computes each next slot and calls _fire_schedules in the same transaction.';
