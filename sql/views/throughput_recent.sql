-- Throughput at a finer grain than bucketq.throughput (per minute), for live charts:
-- acks per group in 10-second slots over the last 5 minutes (BRIN on acked_at).
create or replace view bucketq.throughput_recent as
select g.name as group_name,
       t.name as topic,
       to_timestamp(floor(extract(epoch from d.acked_at) / 10) * 10) as slot,
       count(*) as acked
  from bucketq.deliveries d
  join bucketq.consumer_group g on g.group_id = d.group_id
  join bucketq.topic t on t.topic_id = d.topic_id
 where d.acked_at >= bucketq._now() - interval '5 minutes'
 group by g.name, t.name, to_timestamp(floor(extract(epoch from d.acked_at) / 10) * 10);
comment on view bucketq.throughput_recent is
'Messages acked per group in 10-second slots (slot = start of the slot) over the last 5 minutes, from the delivery records; the current slot is partial. bucketq.throughput has the last 15 minutes per minute.';
