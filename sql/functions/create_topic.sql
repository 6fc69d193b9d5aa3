create or replace function bucketq.create_topic(
  topic text,
  buckets int default 16,
  retention interval default '7 days',
  max_payload_bytes int default 1048576,
  partition_interval interval default '1 day'
) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
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

  -- maintain()'s lock, until we commit, when the topic is new: a rotation of the per-key
  -- counters must see every topic that can send, and ours starts on the part the
  -- others append to. (An existing topic's callers do not wait for maintain().)
  if not exists (select 1 from bucketq.topic x where x.name = topic) then
    perform bucketq._lock_maintenance('create_topic');
  end if;
  insert into bucketq.topic (name, buckets, retention, max_payload_bytes, partition_interval, key_rotation)
  values (topic, buckets, retention, max_payload_bytes, partition_interval,
          coalesce((select max(x.key_rotation) from bucketq.topic x), 0))
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
  -- The topic's own copy of the claim and ack paths, and the public functions' branch to
  -- it (under maintain()'s lock, taken above: create_topic, delete_topic and upgrades
  -- write the public functions' dispatch one at a time).
  perform bucketq._topic_copies(t.topic_id);
  perform bucketq._topic_dispatch();
  return true;
end $$;

comment on function bucketq.create_topic(text, int, interval, int, interval) is
'Create a topic: a named stream split into `buckets` virtual partitions (keyed messages go to bucket hash(key) % buckets). retention: how long messages are kept at least (partitions are dropped once expired and consumed by every group). max_payload_bytes: limit on the stored jsonb size of a payload. partition_interval: time span of one log partition. Idempotent: returns true when created, false when it already exists with the same settings; other settings raise BQ007.';
