-- How many log partitions maintain() keeps made ahead of the one holding the database
-- clock: those that start within the next hour (an hour of slack), at most three. With
-- daily partitions that is none until the day's last hour: every partition in range
-- costs each claim's statements over the log an index scan to set up, and an empty one
-- ahead made a claim of one message 10 to 15% slower (docs/design/log-cursor.md,
-- twenty-second and twenty-third passes). Workers call maintain() every minute, and a
-- send that finds no partition for its time makes one itself.
create or replace function bucketq._partitions_ahead(p_interval interval)
returns int
-- (stable: it reads the clock)
language sql stable as $$
  select least(3, floor(
           extract(epoch from c.now + interval '1 hour' - date_bin(p_interval, c.now, timestamptz '2000-01-01 00:00:00+00'))
           / extract(epoch from p_interval)))::int
    from (select bucketq._now() as now) c
$$;

comment on function bucketq._partitions_ahead(interval) is
'How many log partitions of this interval to keep made ahead of the one holding bucketq._now(): those starting within the next hour, at most 3 (none for daily partitions before 23:00 UTC).';
