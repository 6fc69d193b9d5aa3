create or replace function bucketq.send(
  topic text,
  payload jsonb,
  key text default null,
  headers jsonb default null,
  idempotency_key text default null,
  not_before timestamptz default null
) returns bigint
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every call.
as $$
declare
  v_id bigint;
begin
  select s.id into v_id from bucketq.send_batch(
    topic            => send.topic,
    payloads         => array[send.payload],
    keys             => array[send.key],
    headers          => array[send.headers],
    idempotency_keys => array[send.idempotency_key],
    not_before       => array[send.not_before]) as s(id);
  return v_id;
end $$;

comment on function bucketq.send(text, jsonb, text, jsonb, text, timestamptz) is
'Send one message; returns its id. key: per-key FIFO and bucket routing (NULL: unkeyed, ready at once). headers: JSON object. idempotency_key: a repeat within the topic''s retention returns the original id and inserts nothing. not_before: not delivered before this time. Call it inside your own transaction for a transactional outbox.';
