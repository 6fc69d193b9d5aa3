create or replace function bucketq.send_batch(
  topic text,
  payloads jsonb[],
  keys text[] default null,
  headers jsonb[] default null,
  idempotency_keys text[] default null,
  not_before timestamptz[] default null
) returns setof bigint
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
begin
  -- The body is _send's (send calls it too): the ids, in input order.
  return query select u.id from unnest(bucketq._send(send_batch.topic, payloads, keys, send_batch.headers,
                                                     idempotency_keys, send_batch.not_before)) as u(id);
end $$;

comment on function bucketq.send_batch(text, jsonb[], text[], jsonb[], text[], timestamptz[]) is
'Send many messages to a topic in one statement; returns their ids in input order. keys, headers, idempotency_keys and not_before are NULL or one element per payload. Keyed messages get bucket = hash(key) % buckets and a gapless per-key key_seq in commit order; a repeated idempotency key returns the original id and inserts nothing. Works inside the caller''s transaction (transactional outbox): nothing is visible to consumers until it commits.';
