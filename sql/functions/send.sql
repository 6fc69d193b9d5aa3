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
begin
  -- send_batch's body, called as a plain expression: no statement to set up, no set of
  -- rows to collect (a third of a send's time went to those, and to send_batch's call).
  return (bucketq._send(send.topic, array[send.payload], array[send.key], array[send.headers],
                        array[send.idempotency_key], array[send.not_before]))[1];
end $$;

comment on function bucketq.send(text, jsonb, text, jsonb, text, timestamptz) is
'Send one message; returns its id. key: per-key FIFO and bucket routing (NULL: unkeyed, ready at once). headers: JSON object. idempotency_key: a repeat within the topic''s retention returns the original id and inserts nothing. not_before: not delivered before this time. Call it inside your own transaction for a transactional outbox.';
