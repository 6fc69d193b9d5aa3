-- The note _log_quiet reads at the session's next claim: a claim that looked at every
-- bucket its consumer owns (no buckets argument) found all of them idle at p_snap but
-- p_seen, the buckets _log_busy returned something for (those _log_quiet left out were
-- idle at p_snap too). A session setting, not a row: nothing is written to a table, and
-- a claim that rolls back takes its note back with it (settings are transactional).
create or replace function bucketq._log_quiet_save(
  g bucketq.consumer_group, p_consumer text, p_snap pg_snapshot, p_seen int[], p_now timestamptz)
returns void
language sql as $$
  select set_config('bucketq.quiet_' || g.group_id,
                    format('%s;%s;%s;%s;%s', g.group_id, p_snap, coalesce(p_seen, '{}'),
                           (extract(epoch from p_now) * 1000000)::bigint, p_consumer),
                    false);
$$;

comment on function bucketq._log_quiet_save(bucketq.consumer_group, text, pg_snapshot, int[], timestamptz) is
'Internal (claims): notes in the session (bucketq.quiet_<group_id>) that every bucket the consumer owns was idle at p_snap but p_seen (what _log_busy returned). Read by _log_quiet at the next claim.';
