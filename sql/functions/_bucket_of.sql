-- The bucket of a message: its key's hash, or (unkeyed) its id, modulo the topic's
-- buckets. One definition for send_batch's inserts and its wake-up payload. Immutable
-- SQL of one expression: Postgres inlines it.
create or replace function bucketq._bucket_of(p_key text, p_id bigint, p_buckets int) returns int
language sql immutable parallel safe as $$
  select case when p_key is null then (p_id % p_buckets)::int
              else ((hashtextextended(p_key, 0) & 9223372036854775807) % p_buckets)::int end
$$;

comment on function bucketq._bucket_of(text, bigint, int) is
'Internal: the bucket of a message of this key (NULL: unkeyed, by its id) in a topic of p_buckets buckets.';
