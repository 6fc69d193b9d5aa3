create or replace function bucketq.claim_locked(
  group_name text,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, sent_at timestamptz, epoch bigint, xact xid8)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
-- Generic plans, made once per session: a custom plan of a query over the log's
-- partitions took 4 ms to plan (more with every partition), on every call.
set plan_cache_mode = force_generic_plan
-- and no sequential scans: plans made on an empty inbox must still probe it once it
-- fills (docs/design/log-cursor.md, sixth pass; test/sql-plans.test.ts).
set enable_seqscan = off
-- and no bitmap scans: every read here is an index probe or an ordered range, and a plan
-- made before a new partition had statistics read a bucket's whole log past a window's
-- xmax by bitmap and sorted it (_log_busy, 3.7 ms a claim with one partition in range).
set enable_bitmapscan = off
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
  return query select * from bucketq._claim_locked(g, consumer_id, max_messages, buckets, max_per_key);
end $$;

comment on function bucketq.claim_locked(text, text, int, int[], int) is
'Claim by row lock, in the caller''s transaction (BEGIN first: in autocommit the locks end with the statement). Like claim, it hands out up to max_messages ready messages of the buckets this consumer owns, oldest key first, a key on its first attempt with its run of up to max_per_key messages, in key_seq order, and never a key''s next message before the one before it is acked or dead-lettered. It writes no lease: the rows stay locked (FOR NO KEY UPDATE; other claimers skip them) until the transaction ends. Handle the messages and ack them in the same transaction with lease_tokens => NULL and consumer_id; nack failures there too. If the transaction ends without committing, the messages are ready again at once. Returns lease-free rows: attempt (1 = first try), the bucket''s epoch and xact, the transaction id to pass to record_attempt from another session so that a crash counts as an attempt. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could hand out messages another claim has taken).';
