create or replace view bucketq.lag as
select g.name as group_name,
       t.name as topic,
       l.bucket,
       count(i.msg_id) filter (where i.state = 0) + max(l.ready) as ready,
       count(i.msg_id) filter (where i.state = 1) + max(l.in_flight) as leased,
       count(i.msg_id) filter (where i.state = 2) as delayed,
       count(i.msg_id) filter (where i.state = 3) + max(l.waiting) as waiting,
       count(i.msg_id) filter (where i.state = 4) as dead_blocking,
       count(i.msg_id) filter (where i.state = 1 and i.available_at <= bucketq._now()) as expired_leases,
       bucketq._now() - least(min(i.sent_at), max(l.oldest)) as oldest_age
  from bucketq.consumer_group g
  join bucketq.topic t on t.topic_id = g.topic_id
  -- one row per bucket, from one read of the group's backlog in the log
  cross join lateral bucketq._log_backlog_buckets(g.group_id, g.topic_id, t.buckets, g.start_time) l
  left join bucketq.inbox i on i.group_id = g.group_id and i.bucket = l.bucket
 group by g.name, t.name, l.bucket;

comment on view bucketq.lag is
'Per group and bucket: messages ready to claim (in the log past the bucket''s checkpoint, or in the inbox), leased (in flight), delayed (retry backoff or not_before), waiting behind an earlier message of their key, dead and blocking their key (on_exhausted = block), leases already expired, and the age of the oldest unfinished message.';
