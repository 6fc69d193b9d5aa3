create or replace function bucketq.grant_topic(topic text, role_name text) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_variable
declare
  t bucketq.topic;
begin
  t := bucketq._topic(topic);
  if role_name is null or not exists (select 1 from pg_catalog.pg_roles r where r.rolname = role_name) then
    raise exception 'grant_topic: role % does not exist', bucketq._quote_input(role_name)
      using errcode = 'BQ005', hint = 'Create the role first (create role ... in role bucketq_producer), then grant it the topic.';
  end if;
  insert into bucketq.topic_access (topic_id, role_name) values (t.topic_id, role_name)
  on conflict do nothing;
  return found;
end $$;

comment on function bucketq.grant_topic(text, text) is
'Restrict sending to a topic to the members of the given roles (call once per role; the first call closes the topic to every other bucketq_producer). The schema owner and bucketq_admin always may send. Returns false when the role had it already.';
