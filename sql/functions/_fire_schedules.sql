-- A worker's second step (after _due_schedules, in the same transaction): for each
-- schedule, send its stored message for the slot and move next_at to the slot the
-- worker computed. The caller chooses nothing that is sent: topic, payload, key and
-- headers are the schedule's. What it passes is checked:
--   * slot must equal the schedule's next_at, and next_at must have passed: a slot that
--     another worker fired meanwhile is skipped (no second send);
--   * the next slot must lie ahead of the database clock on a whole minute, so a
--     consumer cannot make a schedule fire more often than once a minute;
--   * the send's idempotency key is the schedule's name and slot: even a racing second
--     send of a slot returns the first message's id and inserts nothing.
-- error (the worker could not parse cron): recorded in last_error, next_at cleared;
-- the schedule then waits until create_schedule replaces it.
-- A send that fails (the topic's payload limit, or producer rights on a topic
-- restricted with grant_topic, which judge the worker's role) is recorded in
-- last_error and that slot is skipped; the next slot tries again.
create or replace function bucketq._fire_schedules(
  group_name text,
  schedule_names text[],
  slots timestamptz[],
  next_slots timestamptz[],
  errors text[] default null
) returns table (schedule_name text, slot timestamptz, msg_id bigint, next_at timestamptz, error text)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group := bucketq._group(group_name);
  v_now timestamptz := bucketq._now();
  n int := coalesce(cardinality(schedule_names), 0);
  s bucketq.schedule;
  t bucketq.topic;
  v_next timestamptz;
  v_err text;
  v_id bigint;
begin
  if cardinality(slots) is distinct from n or cardinality(next_slots) is distinct from n
     or (errors is not null and cardinality(errors) <> n) then
    raise exception '_fire_schedules arrays differ in length'
      using errcode = 'BQ005', hint = 'schedule_names, slots, next_slots (and errors, if given) have one element per schedule.';
  end if;
  for i in 1 .. n loop
    select * into s from bucketq.schedule x
     where x.name = schedule_names[i] and x.topic_id = g.topic_id and not x.paused
       for update skip locked;    -- ours already when _due_schedules locked it; another worker's: its turn
    continue when not found;
    continue when s.next_at is distinct from slots[i] or (s.next_at is not null and s.next_at > v_now);
    v_next := next_slots[i];
    v_err := errors[i];

    if v_err is not null then
      update bucketq.schedule x set next_at = null, last_error = left(v_err, 2000), updated_at = now() where x.name = s.name;
      schedule_name := s.name; slot := s.next_at; msg_id := null; next_at := null; error := left(v_err, 2000);
      return next;
      continue;
    end if;
    if v_next is null or not isfinite(v_next) or v_next <= v_now or v_next <> date_trunc('minute', v_next) then
      raise exception 'invalid next slot for schedule %: % (the database clock is %)', s.name, coalesce(v_next::text, 'NULL'), v_now
        using errcode = 'BQ005', hint = 'The next slot is the first occurrence of the schedule''s cron expression after the database clock: a whole minute ahead of bucketq._now().';
    end if;

    v_id := null;
    v_err := null;
    if s.next_at is not null then
      select * into t from bucketq.topic x where x.topic_id = s.topic_id;
      begin
        v_id := bucketq.send(
          topic => t.name,
          payload => s.payload,
          key => s.key,
          headers => coalesce(s.headers, '{}'::jsonb)
                     || jsonb_build_object('bucketq-schedule', s.name,
                                           'bucketq-slot', to_char(s.next_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
          idempotency_key => 'bucketq.schedule:' || s.name || '@' || to_char(s.next_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
      exception when others then
        v_err := format('sending slot %s failed: %s (%s)', s.next_at, sqlerrm, sqlstate);
      end;
    end if;
    update bucketq.schedule x
       set next_at = v_next,
           last_at = coalesce(s.next_at, x.last_at),
           last_msg_id = coalesce(v_id, x.last_msg_id),
           last_error = case when s.next_at is null then x.last_error else v_err end,
           updated_at = now()
     where x.name = s.name;
    schedule_name := s.name; slot := s.next_at; msg_id := v_id; next_at := v_next; error := v_err;
    return next;
  end loop;
end $$;

comment on function bucketq._fire_schedules(text, text[], timestamptz[], timestamptz[], text[]) is
'Workers only, after _due_schedules in the same transaction: send each due schedule''s own message for its slot (idempotency key name@slot) and move next_at to the given next slot (a whole minute after bucketq._now()); a slot already fired is skipped. The caller picks no payload, key, headers or topic. errors: the worker could not parse cron (recorded, the schedule waits to be replaced). Returns what happened per schedule.';
