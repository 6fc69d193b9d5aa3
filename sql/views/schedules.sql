create or replace view bucketq.schedules as
select s.name,
       t.name as topic,
       s.cron,
       s.timezone,
       case when bucketq._may_read_payloads(s.topic_id) then s.payload end as payload,
       s.key,
       case when bucketq._may_read_payloads(s.topic_id) then s.headers end as headers,
       s.paused,
       s.next_at,
       s.last_at,
       s.last_msg_id,
       s.last_error,
       s.created_at,
       s.updated_at
  from bucketq.schedule s
  join bucketq.topic t on t.topic_id = s.topic_id;

comment on view bucketq.schedules is
'One row per scheduled message (create_schedule): topic, cron expression and time zone, payload, key and headers (NULL where the caller may not read the topic''s payloads), paused, next_at (the next slot; NULL until a worker computes it), last_at and last_msg_id (the slot sent last and its message), last_error (why a slot was not sent or cron does not parse).';
