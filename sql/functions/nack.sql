create or replace function bucketq.nack(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  errors text[] default null,
  retry_delay interval default null,
  strict boolean default true,
  consumer_id text default null
) returns table (msg_id bigint, status text, retry_at timestamptz)
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
  g bucketq.consumer_group := bucketq._group(group_name);
begin
  -- Each topic has its own copy of this function's body (schema bucketq_t<topic_id>,
  -- made by _topic_copies): its statements read the topic's own log table, so that a
  -- call locks and prunes that topic's partitions only, not every topic's
  -- (docs/design/log-cursor.md, thirty-third pass). _topic_dispatch writes one branch
  -- per topic between these two lines.
  -- topic branches begin
  -- topic branches end
  return query select * from bucketq._nack(g, msg_ids, lease_tokens, errors, retry_delay, strict, consumer_id);
end $$;

comment on function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean, text) is
'Report claimed messages as failed, with an error text each. A message with attempts left is retried after retry_delay (NULL: the group''s backoff, base * 2^(attempt-1) capped at backoff_max) and its key stays blocked meanwhile, so order holds. The rest of its run (see claim''s max_per_key) waits behind it again without counting an attempt. A message whose attempts are spent is dead-lettered: with on_exhausted = skip its key moves on, with block the key waits for replay_dead. lease_tokens => NULL with consumer_id: messages this transaction holds by claim_locked (nack them before commit, in that transaction). Status per message: retry, dead or stale (strict, the default, raises BQ006 instead of reporting stale). Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could settle a lease that expired or moved since, and record its messages as delivered twice).';
