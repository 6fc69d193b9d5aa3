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
  -- No CHECK constraint restating the bounds (partitions made by earlier releases have
  -- one, <table>_bounds, left in place: dropping it would lock a live partition): the
  -- table is empty when attached, so the attach has nothing to scan, and a CHECK costs
  -- each INSERT statement its set-up (parsed again from its text: 3% of a single send).
  -- No insert-triggered vacuums: the log is append-only, and under a pinned xmin horizon
  -- each would reread the whole partition (migration 33).
  execute format('create table bucketq.%I (like bucketq.message including defaults including constraints) '
                 'with (autovacuum_vacuum_insert_threshold = -1, toast.autovacuum_vacuum_insert_threshold = -1)', m);
  execute format('create unique index %I on bucketq.%I (id)', m || '_id_key', m);
  -- The claims' window scan and the probe for transactions at a window's edge (the
  -- partitioned indexes message_window and message_xid adopt them on attach).
  execute format('create index %I on bucketq.%I (bucket, ord)', m || '_window', m);
  execute format('create index %I on bucketq.%I (bucket, xid)', m || '_xid', m);
  execute format('alter table bucketq.%I attach partition bucketq.%I for values from (%L) to (%L)',
                 'message_t' || p_topic_id, m, p_lower, p_upper);
  execute format('create table bucketq.%I (like bucketq.delivery including defaults including constraints)', d);
  execute format('alter table bucketq.%I attach partition bucketq.%I for values from (%L) to (%L)',
                 'delivery_t' || p_topic_id, d, p_lower, p_upper);
  insert into bucketq.log_partition (topic_id, lower_bound, upper_bound, message_rel, delivery_rel)
  values (p_topic_id, p_lower, p_upper, m, d);
  return true;
end $$;
