create or replace function bucketq.claim(
  group_name text,
  consumer_id text,
  max_messages int default 100,
  buckets int[] default null,
  lease_timeout interval default null,
  max_per_key int default 1
) returns table (msg_id bigint, bucket int, key text, key_seq bigint, payload jsonb, headers jsonb,
                 attempt int, lease_token bigint, sent_at timestamptz, leased_until timestamptz, epoch bigint)
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
  return query select * from bucketq._claim(g, consumer_id, max_messages, buckets, lease_timeout, max_per_key);
end $$;

comment on function bucketq.claim(text, text, int, int[], interval, int) is
'Lease up to max_messages ready messages in the buckets this consumer owns (it must have joined; see bucketq.join), under their current epochs (FOR UPDATE SKIP LOCKED: concurrent claimers never get the same message). A key''s next message is not handed out before the one before it is acked or dead-lettered. max_per_key (default 1): with more, a key on its first attempt may come as a run of up to that many consecutive messages under one lease; they are returned together in key_seq order, and the consumer must handle them in that order and ack them in order (an ack that skips an earlier message of the run is refused), and nack the first that fails: the rest of the run then waits again. buckets: restrict to these of its buckets (NULL: all it owns). lease_timeout: NULL for the group''s default; an unacked lease expires and the message is delivered again. Returns the message, its attempt number (1 = first try) and the lease_token that ack and nack need. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could hand out messages another claim has taken).';
