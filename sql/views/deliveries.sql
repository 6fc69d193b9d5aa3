create or replace view bucketq.deliveries as
select g.name as group_name,
       t.name as topic,
       d.group_id,
       d.topic_id,
       d.msg_id,
       d.attempt,
       d.consumer_id,
       d.epoch,
       d.acked_at,
       'message'::text as record
  from bucketq.delivery d
  join bucketq.consumer_group g on g.group_id = d.group_id
  join bucketq.topic t on t.topic_id = d.topic_id
union all
select g.name,
       t.name,
       p.group_id,
       g.topic_id,
       u.msg_id,
       1,
       p.consumer_id,
       p.epoch,
       p.created_at,
       'batch'
  from bucketq.progress p
  cross join lateral unnest(p.msg_ids) as u(msg_id)
  join bucketq.consumer_group g on g.group_id = p.group_id
  join bucketq.topic t on t.topic_id = g.topic_id
 where p.kind = 1;

comment on view bucketq.deliveries is
'Did group G process message M, when, by whom, at which epoch and attempt: one row per acked message. record = ''batch'': acked in the normal flow, on its first attempt, recorded with its batch (a bucketq.progress checkpoint row); ''message'': acked from the inbox (a retry, a replay, a message that waited), recorded alone. Kept as long as the topic''s retention. Filter by group_name (and acked_at): a batch''s messages are an array in its checkpoint row, so a filter on msg_id alone reads every group''s batch records; for one message, bucketq.message_states where msg_id = M finds its batch by index.';
