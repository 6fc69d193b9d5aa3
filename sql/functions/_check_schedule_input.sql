-- create_schedule's checks of its input, before anything is written. Postgres does not
-- parse cron: the shape is checked here (five fields of cron characters, or a macro such
-- as @daily), the meaning by the client that computes the occurrences (the TypeScript
-- API and CLI do at creation; a worker records last_error for one it cannot parse).
create or replace function bucketq._check_schedule_input(
  schedule_name text,
  cron text,
  timezone text,
  payload jsonb,
  key text,
  headers jsonb
) returns void
language plpgsql stable as $$
begin
  perform bucketq._check_name('schedule', schedule_name);
  if cron is null
     or not (btrim(cron) ~* '^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$'
             or btrim(cron) ~ '^[0-9A-Za-z*?,/#-]+(\s+[0-9A-Za-z*?,/#-]+){4}$') then
    raise exception 'invalid cron expression for schedule %: %', schedule_name, bucketq._quote_input(cron)
      using errcode = 'BQ005',
            hint = 'Five fields: minute hour day-of-month month day-of-week, e.g. ''*/15 * * * *'' or ''0 3 * * MON''; or @hourly, @daily, @weekly, @monthly, @yearly. Schedules fire on whole minutes (no seconds field).';
  end if;
  if timezone is null or not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = timezone) then
    raise exception 'invalid timezone for schedule %: %', schedule_name, bucketq._quote_input(timezone)
      using errcode = 'BQ005',
            hint = 'An IANA time zone name such as ''UTC'', ''Europe/Paris'' or ''America/New_York'' (see pg_timezone_names).';
  end if;
  if payload is null or payload = 'null'::jsonb then
    raise exception 'payload of schedule % is null', schedule_name
      using errcode = 'BQ005', hint = 'A payload is any JSON value except null, e.g. ''{}''::jsonb.';
  end if;
  if key is not null and (key = '' or length(key) > 1024) then
    raise exception 'key of schedule % is empty or longer than 1024 characters', schedule_name
      using errcode = 'BQ005', hint = 'A key is 1 to 1024 characters, or NULL for unkeyed messages.';
  end if;
  if headers is not null and jsonb_typeof(headers) <> 'object' then
    raise exception 'headers of schedule % are not a JSON object', schedule_name
      using errcode = 'BQ005', hint = 'headers are a JSON object, e.g. ''{"source":"cron"}''::jsonb, or NULL.';
  end if;
end $$;

comment on function bucketq._check_schedule_input(text, text, text, jsonb, text, jsonb) is
'create_schedule''s input checks: schedule name, cron shape (five fields or a macro; the client checks its meaning), IANA timezone, payload not null, key length, headers an object. Raises BQ001 or BQ005 with a hint.';
