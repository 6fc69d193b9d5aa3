create or replace function bucketq.record_attempt(group_name text, consumer_id text, xact xid8, msg_ids bigint[])
returns void
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
-- Generic plans, made once per session: a custom plan of a query over the log's
-- partitions took 4 ms to plan (more with every partition), on every call.
set plan_cache_mode = force_generic_plan
-- and no sequential scans: plans made on an empty inbox must still probe it once it
-- fills (docs/design/log-cursor.md, sixth pass; test/sql-plans.test.ts).
set enable_seqscan = off
as $$
declare
  g bucketq.consumer_group := coalesce((select x from bucketq._group_unrestricted(group_name) x), bucketq._group(group_name));
begin
  -- Each topic has its own copy of this function's body (schema bucketq_t<topic_id>,
  -- made by _topic_copies): its statements read the topic's own log table, so that a
  -- call locks and prunes that topic's partitions only, not every topic's
  -- (docs/design/log-cursor.md, thirty-third pass). _topic_dispatch writes one branch
  -- per topic between these two lines.
  -- topic branches begin
  -- topic branches end
  perform bucketq._record_attempt(g, consumer_id, xact, msg_ids);
end $$;

comment on function bucketq.record_attempt(text, text, xid8, bigint[]) is
'Call from a session other than the claiming one (autocommit) of the same login, right after claim_locked handed out messages, while its transaction is open: records that transaction xact is attempting msg_ids. If that transaction then ends without committing (the worker crashed, its connection dropped or timed out, it rolled back), the next claim_locked of the group counts an attempt for each of those messages that is still the next of its key, and dead-letters those whose attempts are spent. Without it, a message that kills its worker is retried forever. Refused (BQ005, nothing recorded): an xact that is not running in a session of the caller''s login in this database (or the caller''s own), and msg_ids that transaction does not hold for this consumer.';
