-- How many log partitions maintain() keeps made ahead of the current one: enough for an
-- hour of slack, at least one, at most three.
create or replace function bucketq._partitions_ahead(p_interval interval)
returns int
language sql immutable as $$
  select least(3, greatest(1, ceil(extract(epoch from interval '1 hour') / extract(epoch from p_interval))))::int
$$;
