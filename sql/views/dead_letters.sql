create or replace view bucketq.dead_letters as
select g.name as group_name,
       t.name as topic,
       d.msg_id,
       m.key,
       d.key_seq,
       d.bucket,
       d.attempts,
       d.last_error,
       d.dead_at,
       d.sent_at,
       case when d.replayed_at is not null then 'replayed'
            when g.on_exhausted = 'block' then 'blocking'
            else 'skipped' end as status,
       d.replayed_at,
       case when bucketq._may_read_payloads(d.topic_id, d.group_id) then m.payload end as payload,
       case when bucketq._may_read_payloads(d.topic_id, d.group_id) then m.headers end as headers
  from bucketq.dead_letter d
  join bucketq.consumer_group g on g.group_id = d.group_id
  join bucketq.topic t on t.topic_id = d.topic_id
  left join bucketq.message m on m.topic_id = d.topic_id and m.sent_at = d.sent_at and m.id = d.msg_id;

comment on view bucketq.dead_letters is
'Messages that failed max_attempts times, per group: key, attempts, last error, when, payload, and status: skipped (the key moved on), blocking (the key waits for replay_dead) or replayed. payload and headers are NULL for a reader who may not read that group''s payloads (restricted with grant_group).';
