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
       case when bucketq._may_read_payloads(m.topic_id) then m.headers end as headers
  from bucketq.message m
  join bucketq.topic t on t.topic_id = m.topic_id;
comment on view bucketq.messages is
'The log: every retained message with its topic, key, key_seq, bucket, send time, not_before, idempotency key, payload and headers. Filter by msg_id (indexed) or by topic and key (reads the topic''s log).';
