-- bucketq 000002: topics, log partitions and maintenance.
--
-- Error codes of our own (mapped to typed errors by the TypeScript client):
--   BQ001 invalid name          BQ002 unknown topic        BQ003 unknown group
--   BQ004 payload too large     BQ005 invalid argument     BQ006 stale lease
--   BQ007 exists with other settings                       BQ008 fenced (not owner / wrong epoch)

create function bucketq._check_name(kind text, name text) returns void
language plpgsql immutable as $$
begin
  if name is null or name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' then
    raise exception 'invalid % name: %', kind, coalesce(quote_literal(name), 'NULL')
      using errcode = 'BQ001',
            hint = format('A %s name is 1 to 100 characters: letters, digits, ".", "_" or "-", starting with a letter or digit.', kind);
  end if;
end $$;

create function bucketq._topic(topic_name text) returns bucketq.topic
language plpgsql stable as $$
declare
  t bucketq.topic;
begin
  select * into t from bucketq.topic where name = topic_name;
  if not found then
    raise exception 'unknown topic: %', coalesce(quote_literal(topic_name), 'NULL')
      using errcode = 'BQ002',
            hint = 'Create it first with bucketq.create_topic(topic => ...); list topics with: select name from bucketq.topics;';
  end if;
  return t;
end $$;

-- Create a table standalone, then ATTACH it: attaching takes a weaker lock on the
-- parent than CREATE TABLE ... PARTITION OF, so producers keep flowing.
create function bucketq._create_partitions(p_topic_id int, p_lower timestamptz, p_upper timestamptz)
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

-- Partitions from the one holding now() to `ahead` intervals past it.
create function bucketq._ensure_partitions(p_topic bucketq.topic, ahead int default 3)
returns int
language plpgsql as $$
declare
  lo timestamptz := date_bin(p_topic.partition_interval, bucketq._now(), timestamptz '2000-01-01 00:00:00+00');
  made int := 0;
begin
  for i in 0 .. ahead loop
    if bucketq._create_partitions(p_topic.topic_id, lo + p_topic.partition_interval * i,
                                  lo + p_topic.partition_interval * (i + 1)) then
      made := made + 1;
    end if;
  end loop;
  return made;
end $$;

create function bucketq.create_topic(
  topic text,
  buckets int default 16,
  retention interval default '7 days',
  max_payload_bytes int default 1048576,
  partition_interval interval default '1 day'
) returns boolean
language plpgsql as $$
#variable_conflict use_variable
declare
  t bucketq.topic;
begin
  perform bucketq._check_name('topic', topic);
  if buckets is null or buckets < 1 or buckets > 4096 then
    raise exception 'invalid buckets for topic %: %', topic, coalesce(buckets::text, 'NULL')
      using errcode = 'BQ005', hint = 'buckets is the number of virtual partitions: 1 to 4096 (default 16).';
  end if;
  if partition_interval is null or partition_interval < interval '1 minute'
     or extract(month from partition_interval) <> 0 or extract(year from partition_interval) <> 0 then
    raise exception 'invalid partition_interval for topic %: %', topic, coalesce(partition_interval::text, 'NULL')
      using errcode = 'BQ005', hint = 'Use a fixed length of at least 1 minute in days, hours or minutes, e.g. ''1 day'' or ''1 hour'' (months and years vary in length).';
  end if;
  if retention is null or retention < partition_interval then
    raise exception 'invalid retention for topic %: % (partition_interval is %)', topic, coalesce(retention::text, 'NULL'), partition_interval
      using errcode = 'BQ005', hint = 'retention must be at least one partition_interval, e.g. retention => ''7 days'' with partition_interval => ''1 day''.';
  end if;
  if max_payload_bytes is null or max_payload_bytes < 16 or max_payload_bytes > 104857600 then
    raise exception 'invalid max_payload_bytes for topic %: %', topic, coalesce(max_payload_bytes::text, 'NULL')
      using errcode = 'BQ005', hint = 'max_payload_bytes is 16 to 104857600 (100 MiB); default 1048576.';
  end if;

  insert into bucketq.topic (name, buckets, retention, max_payload_bytes, partition_interval)
  values (topic, buckets, retention, max_payload_bytes, partition_interval)
  on conflict (name) do nothing
  returning * into t;

  if not found then
    select * into t from bucketq.topic x where x.name = topic;
    if (t.buckets, t.retention, t.max_payload_bytes, t.partition_interval)
       is distinct from (buckets, retention, max_payload_bytes, partition_interval) then
      raise exception 'topic % already exists with other settings', topic
        using errcode = 'BQ007',
              detail = format('existing: buckets=%s retention=%s max_payload_bytes=%s partition_interval=%s; requested: buckets=%s retention=%s max_payload_bytes=%s partition_interval=%s',
                              t.buckets, t.retention, t.max_payload_bytes, t.partition_interval,
                              buckets, retention, max_payload_bytes, partition_interval),
              hint = 'A topic''s bucket count cannot change (it decides which bucket a key lands in). Call create_topic with the existing settings, or create a topic with a new name.';
    end if;
    return false;
  end if;

  execute format('create table bucketq.%I partition of bucketq.message for values in (%s) partition by range (sent_at)',
                 'message_t' || t.topic_id, t.topic_id);
  execute format('create table bucketq.%I partition of bucketq.delivery for values in (%s) partition by range (sent_at)',
                 'delivery_t' || t.topic_id, t.topic_id);
  perform bucketq._ensure_partitions(t);
  return true;
end $$;

comment on function bucketq.create_topic(text, int, interval, int, interval) is
'Create a topic: a named stream split into `buckets` virtual partitions (keyed messages go to bucket hash(key) % buckets). retention: how long messages are kept at least (partitions are dropped once expired and consumed by every group). max_payload_bytes: limit on the stored jsonb size of a payload. partition_interval: time span of one log partition. Idempotent: returns true when created, false when it already exists with the same settings; other settings raise BQ007.';

create function bucketq.maintain(wait boolean default true)
returns table (topic text, action text, detail text)
language plpgsql as $$
#variable_conflict use_column
declare
  t bucketq.topic;
  p bucketq.log_partition;
  v_now timestamptz;
  v_groups int[];
  v_max_id bigint;
  v_pruned bigint;
begin
  -- One maintainer at a time; a concurrent caller waits, then finds nothing to do
  -- (or, with wait => false, returns at once: how workers call it periodically).
  if wait then
    perform pg_advisory_xact_lock(bucketq._lock_ns(), 0);
  elsif not pg_try_advisory_xact_lock(bucketq._lock_ns(), 0) then
    return;
  end if;
  v_now := bucketq._now();
  for t in select * from bucketq.topic order by topic_id loop
    if bucketq._ensure_partitions(t) > 0 then
      topic := t.name; action := 'created_partitions'; detail := 'partitions up to ' || (date_bin(t.partition_interval, v_now, timestamptz '2000-01-01 00:00:00+00') + t.partition_interval * 4)::text;
      return next;
    end if;

    select array_agg(group_id) into v_groups from bucketq.consumer_group where topic_id = t.topic_id;
    for p in select * from bucketq.log_partition
             where topic_id = t.topic_id and upper_bound <= v_now - t.retention
             order by lower_bound loop
      begin
        -- Lock first, then check: a producer still inserting into this partition
        -- commits (with its inbox rows) before we look.
        set local lock_timeout = '5s';
        execute format('lock table bucketq.%I in access exclusive mode', p.message_rel);
        execute format('select max(id) from bucketq.%I', p.message_rel) into v_max_id;
        -- Every group must be done: no un-acked, un-skipped row at or below the
        -- partition's last id (ids grow with time, so this is conservative).
        if v_max_id is not null and exists (
             select 1 from bucketq.inbox i
             where i.group_id = any(coalesce(v_groups, '{}')) and i.msg_id <= v_max_id) then
          topic := t.name; action := 'kept_partition'; detail := p.message_rel || ': expired but not yet consumed by every group';
          return next;
          continue;
        end if;
        execute format('drop table bucketq.%I', p.message_rel);
        execute format('drop table bucketq.%I', p.delivery_rel);
        delete from bucketq.dead_letter d
         where d.group_id = any(coalesce(v_groups, '{}')) and d.sent_at < p.upper_bound and d.sent_at >= p.lower_bound;
        delete from bucketq.log_partition where topic_id = p.topic_id and lower_bound = p.lower_bound;
        topic := t.name; action := 'dropped_partition'; detail := p.message_rel;
        return next;
      exception when lock_not_available then
        topic := t.name; action := 'kept_partition'; detail := p.message_rel || ': busy (lock timeout); retried on the next run';
        return next;
      end;
    end loop;

    delete from bucketq.idempotency i where i.topic_id = t.topic_id and i.sent_at < v_now - t.retention;
    get diagnostics v_pruned = row_count;
    if v_pruned > 0 then
      topic := t.name; action := 'pruned_idempotency_keys'; detail := v_pruned::text;
      return next;
    end if;
  end loop;
end $$;

comment on function bucketq.maintain(boolean) is
'Housekeeping, safe to call concurrently (callers serialise on an advisory lock; wait => false returns at once if another caller is at it; workers call it so every minute): creates log partitions ahead of time, drops partitions whose retention has passed and whose messages every group has acked or dead-lettered (whole partitions, never row DELETEs on the log), prunes expired idempotency keys. Returns one row per action taken.';

insert into bucketq.migration (version, name) values (2, 'topics');
