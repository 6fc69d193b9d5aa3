-- Read side only, from the public views (never the tables behind them), so it keeps
-- working when the internals change. SECURITY DEFINER like every public function: a
-- role granted execute (bucketq_monitor) gets these aggregates, nothing more.
create or replace function bucketq.metrics()
returns table (metric text, topic text, group_name text, bucket int, state text, value double precision)
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
-- No JIT: the views' plans are estimated dear enough to be compiled, and compiling them
-- cost ten times the scrape (Debian's Postgres 15: 1.34 s with JIT, 0.12 s without).
set jit = off
as $$
  with lag as (
    select l.group_name, l.topic, l.bucket, l.ready, l.leased, l.delayed, l.waiting, l.dead_blocking, l.expired_leases,
           extract(epoch from l.oldest_age)::float8 as oldest_age
      from bucketq.lag l
  ),
  paused as (
    select distinct b.group_name from bucketq.buckets b where b.owner = ''
  ),
  rotations as (
    select r.rotation, r.due_for, r.kept_runs, r.bytes from bucketq.rotations r
  )
  -- per group and state: messages not finished yet
  select 'bucketq_group_messages', l.topic, l.group_name, null::int, s.state, sum(s.n)::float8
    from lag l
   cross join lateral (values ('ready', l.ready), ('leased', l.leased), ('delayed', l.delayed), ('waiting', l.waiting), ('dead_blocking', l.dead_blocking)) as s(state, n)
   group by l.topic, l.group_name, s.state
  union all
  select 'bucketq_group_oldest_message_age_seconds', l.topic, l.group_name, null, null, coalesce(max(l.oldest_age), 0)
    from lag l group by l.topic, l.group_name
  union all
  select 'bucketq_group_expired_leases', l.topic, l.group_name, null, null, sum(l.expired_leases)::float8
    from lag l group by l.topic, l.group_name
  union all
  -- per group and bucket: unfinished messages and the age of the oldest
  select 'bucketq_bucket_lag_messages', l.topic, l.group_name, l.bucket, null, (l.ready + l.leased + l.delayed + l.waiting + l.dead_blocking)::float8
    from lag l
  union all
  select 'bucketq_bucket_oldest_message_age_seconds', l.topic, l.group_name, l.bucket, null, coalesce(l.oldest_age, 0)
    from lag l
  union all
  select 'bucketq_group_dead_letters', g.topic, g.group_name, null, null, g.dead::float8
    from bucketq.groups g
  union all
  select 'bucketq_group_consumers', g.topic, g.group_name, null, a.alive,
         (select count(*) from bucketq.consumers c where c.group_name = g.group_name and c.alive::text = a.alive)::float8
    from bucketq.groups g cross join (values ('true'), ('false')) as a(alive)
  union all
  select 'bucketq_group_owned_buckets', g.topic, g.group_name, null, null,
         (select count(*) from bucketq.buckets b where b.group_name = g.group_name and b.owned and b.owner <> '')::float8
    from bucketq.groups g
  union all
  select 'bucketq_group_paused', g.topic, g.group_name, null, null, case when p.group_name is null then 0 else 1 end::float8
    from bucketq.groups g left join paused p on p.group_name = g.group_name
  union all
  select 'bucketq_topic_buckets', t.name, null, null, null, t.buckets::float8 from bucketq.topics t
  union all
  select 'bucketq_topic_partitions', t.name, null, null, null, t.partitions::float8 from bucketq.topics t
  union all
  select 'bucketq_topic_log_bytes', t.name, null, null, null, t.log_bytes::float8 from bucketq.topics t
  union all
  -- per TRUNCATE rotation of maintain() (the state column carries its name)
  select 'bucketq_rotation_due_seconds', null, null, null, r.rotation, coalesce(extract(epoch from r.due_for)::float8, 0)
    from rotations r
  union all
  select 'bucketq_rotation_kept_runs', null, null, null, r.rotation, coalesce(r.kept_runs, 0)::float8 from rotations r
  union all
  select 'bucketq_rotation_bytes', null, null, null, r.rotation, r.bytes::float8 from rotations r
$$;

comment on function bucketq.metrics() is
'What a monitoring system scrapes, computed from the public views in one call, independent of any running worker (`bucketq exporter` serves it to Prometheus). One row per metric and label set: bucketq_group_messages (per group, by state: ready, leased, delayed, waiting, dead_blocking), bucketq_group_oldest_message_age_seconds, bucketq_group_expired_leases, bucketq_bucket_lag_messages and bucketq_bucket_oldest_message_age_seconds (per group and bucket), bucketq_group_dead_letters (not replayed), bucketq_group_consumers (state: alive true or false), bucketq_group_owned_buckets (owned by a live consumer), bucketq_group_paused (1 or 0), bucketq_topic_buckets, bucketq_topic_partitions, bucketq_topic_log_bytes, and per rotation of maintain() (key_counter, consumer_beat; view bucketq.rotations) bucketq_rotation_due_seconds (how long it has been due: rows wait that no one appends to; 0 while nothing is due; alert above 300), bucketq_rotation_kept_runs (runs in a row that gave up on its lock) and bucketq_rotation_bytes. Unused labels are NULL; the state column carries the state, alive or rotation label.';
