create or replace function bucketq.drop_schedule(schedule_name text) returns boolean
language sql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
  with gone as (delete from bucketq.schedule s where s.name = drop_schedule.schedule_name returning 1)
  select exists (select 1 from gone)
$$;

comment on function bucketq.drop_schedule(text) is
'Delete a scheduled message; messages it already sent stay. Returns true when it existed, false when there was no schedule by that name.';
