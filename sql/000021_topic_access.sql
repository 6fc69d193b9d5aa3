-- bucketq 000021: producers for their topics only. A topic with access rows takes
-- messages (send, send_batch) only from members of those roles, the schema owner and
-- bucketq_admin; a topic without any stays open to every bucketq_producer, as before.
-- The same shape as group_access (000010); bucketq.grant_topic and revoke_topic
-- (sql/functions) fill it.

create table bucketq.topic_access (
  topic_id  int not null references bucketq.topic on delete cascade,
  role_name name not null,
  primary key (topic_id, role_name)
);
comment on table bucketq.topic_access is 'Producer rights per topic (grant_topic): a topic with rows here takes messages only from members of these roles, the schema owner and bucketq_admin.';

insert into bucketq.migration (version, name) values (21, 'topic_access');
