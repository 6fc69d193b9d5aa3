-- Which part of bucketq.consumer_beat a heartbeat at p_at goes to: 0 in even five-minute
-- periods since the epoch, 1 in odd ones (migration 39). By the clock, not a pointer row
-- that maintain() would update: a row read by every heartbeat would gather a version per
-- rotation under a pinned horizon. Readers look in both parts, so a beat in either is
-- found; maintain() empties the part of the previous period in the second half of the
-- current one. One expression: inlined into the caller.
create or replace function bucketq._beat_part(p_at timestamptz) returns smallint
language sql stable as $$
  select (floor(extract(epoch from p_at) / 300)::bigint % 2)::smallint
$$;

comment on function bucketq._beat_part(timestamptz) is
'The part of bucketq.consumer_beat (0 or 1) that heartbeats at p_at go to: which five-minute period since the epoch, even or odd.';
