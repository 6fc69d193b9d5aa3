-- What a rotation did, for bucketq.rotations: one row per rotation, updated in place once
-- per maintain() run at most (migration 40). A rotation done resets the count of runs
-- that gave up; one given up counts, and keeps when the first of them ran.
create or replace function bucketq._record_rotation(p_name text, p_rotated boolean, p_detail text, p_now timestamptz)
returns void
language sql set search_path = pg_catalog, bucketq, pg_temp
as $$
  insert into bucketq.rotation as r (name, rotated_at, kept_runs, kept_since, last_detail)
  values (p_name, p_now, case when p_rotated then 0 else 1 end, case when p_rotated then null else p_now end, p_detail)
  on conflict (name) do update
    set rotated_at  = case when p_rotated then p_now else r.rotated_at end,
        kept_runs   = case when p_rotated then 0 else r.kept_runs + 1 end,
        kept_since  = case when p_rotated then null else coalesce(r.kept_since, p_now) end,
        last_detail = p_detail
$$;

comment on function bucketq._record_rotation(text, boolean, text, timestamptz) is
'For the rotations maintain() runs: records in bucketq.rotation that rotation p_name (key_counter or consumer_beat) emptied its part at p_now (p_rotated), or gave up on its lock (counted in kept_runs since kept_since). p_detail is shown by bucketq.rotations.';
