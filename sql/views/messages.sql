create or replace view bucketq.messages as
select t.name as topic,
       m.id as msg_id,
       m.key,
       m.key_seq,
       m.bucket,
       m.sent_at,
       m.not_before,
       m.idempotency_key,
       case when bucketq._may_read_payloads(m.topic_id) then m.payload end as payload,
       case when bucketq._may_read_payloads(m.topic_id) then m.headers end as headers,
       -- The log is partitioned by topic_id: a filter on it reads one topic's partitions,
       -- where one on the topic's name is a join the planner runs over every topic's log.
       m.topic_id
  from bucketq.message m
  join bucketq.topic t on t.topic_id = m.topic_id;
comment on view bucketq.messages is
'The log: every retained message with its topic, key, key_seq, bucket, send time, not_before, idempotency key, payload and headers. Filter by msg_id (indexed). To read one topic, filter by topic_id, e.g. where topic_id = (select topic_id from bucketq.topics where name = ''orders'') and key = ''k1'': only that topic''s log is read. A filter on topic alone reads every topic''s log.';
