-- bucketq 000018: the log's id index is unique, per partition. Message ids come from
-- one sequence, so they were unique already; saying so lets the planner estimate a
-- lookup by `id = any(ids)` as one row per id even on a partition autovacuum has not
-- analyzed yet. Without statistics it took 250 ids for most of the table and the
-- claims' payload fetch scanned whole partitions: two claims of 250 from 20,000
-- messages read 40,000 rows, and claims under end-to-end load took 21 to 29 ms (every
-- partition is unanalyzed for its first minute or so). The partitioned index on
-- bucketq.message cannot be unique (it would have to include sent_at), so each leaf
-- partition gets its own: existing ones here, new ones in _create_partitions. Building
-- them locks each partition against sends for the build's duration. (Postgres 15 still
-- prefers a scan with a hashed filter on a partition of up to about 20,000 rows, where
-- the scan is cheap; 16 and later were not checked below 50,000, 18 probes at 20,000.)

do $$
declare
  p regclass;
begin
  for p in select t.relid from pg_partition_tree('bucketq.message') t where t.isleaf loop
    execute format('create unique index %I on %s (id)', (select relname from pg_class where oid = p) || '_id_key', p);
  end loop;
end $$;

drop index bucketq.message_id;

create or replace function bucketq._create_partitions(p_topic_id int, p_lower timestamptz, p_upper timestamptz)
returns boolean
language plpgsql as $$
declare
  suffix text := format('t%s_%s', p_topic_id, to_char(p_lower at time zone 'UTC', 'YYYYMMDD"T"HH24MISS'));
  m text := 'message_' || suffix;
  d text := 'delivery_' || suffix;
begin
  if exists (select 1 from bucketq.log_partition where topic_id = p_topic_id and lower_bound = p_lower) then
    return false;
  end if;
  execute format('create table bucketq.%I (like bucketq.message including defaults including constraints)', m);
  execute format('alter table bucketq.%I add constraint %I check (topic_id = %s and sent_at >= %L and sent_at < %L)',
                 m, m || '_bounds', p_topic_id, p_lower, p_upper);
  execute format('create unique index %I on bucketq.%I (id)', m || '_id_key', m);
  execute format('alter table bucketq.%I attach partition bucketq.%I for values from (%L) to (%L)',
                 'message_t' || p_topic_id, m, p_lower, p_upper);
  execute format('create table bucketq.%I (like bucketq.delivery including defaults including constraints)', d);
  execute format('alter table bucketq.%I add constraint %I check (topic_id = %s and sent_at >= %L and sent_at < %L)',
                 d, d || '_bounds', p_topic_id, p_lower, p_upper);
  execute format('alter table bucketq.%I attach partition bucketq.%I for values from (%L) to (%L)',
                 'delivery_t' || p_topic_id, d, p_lower, p_upper);
  insert into bucketq.log_partition (topic_id, lower_bound, upper_bound, message_rel, delivery_rel)
  values (p_topic_id, p_lower, p_upper, m, d);
  return true;
end $$;

insert into bucketq.migration (version, name) values (18, 'message_id_unique');
