-- The consumer's row when the caller joined it: the usual answer of _check_consumer, as
-- a query inlined into the hot paths' (ack, the claims, record_attempt). No row (another
-- role acting as it, an admin, a consumer that left or never joined) sends them to
-- _check_consumer, which decides and says why. (A set: a scalar SQL function with a
-- subquery is called, not inlined.) heartbeat_at is the consumer's heartbeat now
-- (bucketq._consumer_now); callers that do not read it do not compute it.
create or replace function bucketq._consumer_joined_by_caller(p_group_id int, p_consumer text) returns setof bucketq.consumer
language sql stable as $$
  select c.* from bucketq._consumer_now c
   where c.group_id = p_group_id and c.consumer_id = p_consumer
     and c.joined_by = bucketq._caller()
$$;

comment on function bucketq._consumer_joined_by_caller(int, text) is
'The consumer''s row when the caller joined it (bucketq.join), else none: the hot paths'' check before bucketq._check_consumer.';
