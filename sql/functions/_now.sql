-- The test clock (session setting bucketq.clock_offset) is settable by anyone, and the
-- functions now run as their owner: a producer or consumer moving the clock could expire
-- other consumers' sessions and leases or let maintain() drop partitions and prune
-- idempotency keys early. Honour the offset only for sessions that log in as the schema
-- owner (or a member of it, such as a superuser); for anyone else it is ignored.
--
-- No subquery in the body, so that Postgres inlines it into the calling statement: as a
-- function called (Postgres 14 to 17 plan a SQL function's body again at every call) it
-- cost 27 µs a call there, three times a send, claim and ack. The owner is looked up
-- only when an offset is set (tests).
create or replace function bucketq._now() returns timestamptz
language sql stable as $$
  select now() + case
    when coalesce(current_setting('bucketq.clock_offset', true), '') = '' then interval '0'
    when pg_catalog.pg_has_role(session_user, bucketq._schema_owner(), 'member')
      then current_setting('bucketq.clock_offset', true)::interval
    else interval '0'
  end
$$;
