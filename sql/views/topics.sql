create or replace view bucketq.topics as
select t.name,
       t.buckets,
       t.retention,
       t.max_payload_bytes,
       t.partition_interval,
       (select count(*) from bucketq.consumer_group g where g.topic_id = t.topic_id) as groups,
       (select count(*) from bucketq.log_partition p where p.topic_id = t.topic_id) as partitions,
       (select min(p.lower_bound) from bucketq.log_partition p where p.topic_id = t.topic_id) as oldest_partition,
       (select coalesce(sum(pg_total_relation_size(format('bucketq.%I', p.message_rel)::regclass)), 0)
          from bucketq.log_partition p where p.topic_id = t.topic_id) as log_bytes,
       t.created_at,
       t.log_from,
       (select count(*) from bucketq.log_partition p where p.topic_id = t.topic_id and p.lower_bound >= t.log_from) as partitions_read,
       t.topic_id
  from bucketq.topic t;

comment on view bucketq.topics is
'One row per topic: bucket count, retention, payload limit, partition interval, number of groups and log partitions, oldest partition and log size on disk; log_from, the log''s floor (claims read no partition below it: maintain() raises it past the partitions every group has passed), and partitions_read, the partitions at or above it; topic_id, the id the log is partitioned by (bucketq.messages and bucketq.deliveries have it: filter them by it to read one topic''s log).';
