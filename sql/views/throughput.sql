create or replace view bucketq.throughput as
select g.name as group_name,
       t.name as topic,
       date_trunc('minute', d.acked_at) as minute,
       count(*) as acked,
       round(count(*) / 60.0, 1) as acked_per_second
  from bucketq.deliveries d
  join bucketq.consumer_group g on g.group_id = d.group_id
  join bucketq.topic t on t.topic_id = d.topic_id
 where d.acked_at >= date_trunc('minute', bucketq._now()) - interval '15 minutes'
 group by g.name, t.name, date_trunc('minute', d.acked_at);

comment on view bucketq.throughput is
'Messages acked per group and minute over the last 15 minutes (the current minute is partial), from the delivery records.';
