create or replace function bucketq.create_schedule(
  schedule_name text,
  topic text,
  cron text,
  payload jsonb,
  key text default null,
  timezone text default 'UTC',
  headers jsonb default null,
  paused boolean default false,
  next_at timestamptz default null
) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_variable
declare
  t bucketq.topic;
  s bucketq.schedule;
  v_cron text := btrim(cron);
begin
  t := bucketq._topic(topic);
  perform bucketq._check_schedule_input(schedule_name, v_cron, timezone, payload, key, headers);
  if next_at is not null and (not isfinite(next_at) or next_at <> date_trunc('minute', next_at)) then
    raise exception 'invalid next_at for schedule %: % (not a whole minute)', schedule_name, next_at
      using errcode = 'BQ005',
            hint = 'next_at is the first slot of the cron expression (a whole minute), or NULL to let the first worker compute it.';
  end if;

  insert into bucketq.schedule (name, topic_id, cron, timezone, payload, key, headers, paused, next_at)
  values (schedule_name, t.topic_id, v_cron, timezone, payload, key, headers, coalesce(paused, false), next_at)
  on conflict (name) do nothing;
  if found then
    return true;
  end if;

  select * into s from bucketq.schedule x where x.name = schedule_name for update;
  if (s.topic_id, s.cron, s.timezone, s.payload, s.key, s.headers, s.paused)
     is not distinct from (t.topic_id, v_cron, timezone, payload, key, headers, coalesce(paused, false)) then
    return false;
  end if;
  -- Another definition under the same name replaces the old one. Its slots stay unless
  -- the cron expression, time zone or topic changed (then they start over from next_at).
  update bucketq.schedule x
     set topic_id = t.topic_id, cron = v_cron, timezone = create_schedule.timezone, payload = create_schedule.payload,
         key = create_schedule.key, headers = create_schedule.headers, paused = coalesce(create_schedule.paused, false),
         next_at = case when (s.topic_id, s.cron, s.timezone) is not distinct from (t.topic_id, v_cron, create_schedule.timezone)
                             and s.last_error is null
                        then s.next_at else create_schedule.next_at end,
         last_error = null,
         updated_at = now()
   where x.name = schedule_name;
  return true;
end $$;

comment on function bucketq.create_schedule(text, text, text, jsonb, text, text, jsonb, boolean, timestamptz) is
'Create or replace a scheduled message: payload (with key and headers) is sent to topic at every occurrence of cron (five fields: minute hour day-of-month month day-of-week, or @hourly/@daily/@weekly/@monthly/@yearly) in timezone. The workers of the topic''s groups send it, once per slot (headers bucketq-schedule and bucketq-slot say which); after downtime only the oldest missed slot is sent, then it continues from now. next_at: the first slot, computed by the client (NULL: the first worker computes it). Returns true when created or changed, false when it already exists with the same definition.';
