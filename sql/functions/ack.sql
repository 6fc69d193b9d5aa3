create or replace function bucketq.ack(
  group_name text,
  msg_ids bigint[],
  lease_tokens bigint[],
  consumer_id text default null,
  strict boolean default true
) returns table (msg_id bigint, status text)
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
  return query select * from bucketq._ack(g, msg_ids, lease_tokens, consumer_id, strict);
end $$;

comment on function bucketq.ack(text, bigint[], bigint[], text, boolean) is
'Acknowledge claimed messages (arrays: one msg_id and lease_token each). In the caller''s transaction it checks each lease is still held and that its claimer still owns the bucket at the lease''s epoch (else BQ008: fenced, nothing acked), writes the delivery record and makes the key''s next message ready, so effects written in the same transaction commit if and only if the ack does. A key''s messages are acked in key_seq order (see claim''s max_per_key): acking one while an earlier one of its key is still there raises BQ005 and acks nothing. lease_tokens => NULL with consumer_id: messages this transaction holds by claim_locked; the consumer must still own their buckets. strict (default): if any message is not held, raise BQ006 and ack nothing. strict => false: ack what is held; status per message is acked, already_acked or stale. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could settle a lease that expired or moved since, and record its messages as delivered twice).';
