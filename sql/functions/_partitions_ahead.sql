-- How many log partitions maintain() keeps made ahead of the current one: enough for an
-- hour of slack, at least one, at most three.
-- (3d4f1ce made it (interval, timestamptz), for none ahead before a daily topic's last
-- hour; reverted: with one partition in range a drain ran 10% slower.)
drop function if exists bucketq._partitions_ahead(interval, timestamptz);
create or replace function bucketq._partitions_ahead(p_interval interval)
returns int
language sql immutable as $$
  select least(3, greatest(1, ceil(extract(epoch from interval '1 hour') / extract(epoch from p_interval))))::int
$$;
