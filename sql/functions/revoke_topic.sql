create or replace function bucketq.revoke_topic(topic text, role_name text) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_variable
declare
  t bucketq.topic;
begin
  t := bucketq._topic(topic);
  delete from bucketq.topic_access a where a.topic_id = t.topic_id and a.role_name = revoke_topic.role_name;
  return found;
end $$;

comment on function bucketq.revoke_topic(text, text) is
'Take a role''s right to send to a topic back. When no role is left the topic is open to every bucketq_producer again. Returns false when the role did not have it.';
