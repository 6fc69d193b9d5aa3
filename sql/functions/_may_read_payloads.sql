-- May the caller read the payloads and headers of this topic's messages in the views
-- (messages, dead_letters)? Not when a consumer group restricted with grant_group reads
-- the topic and the caller may consume none of its restricted groups: a monitor sees
-- metadata of every group, payloads only where the teams that own them let it.
-- p_group_id (dead_letters): the payload as that group's; it must be allowed too.
create or replace function bucketq._may_read_payloads(p_topic_id int, p_group_id int default null) returns boolean
language sql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
  select bucketq._caller_is_admin()
      or ((p_group_id is null or bucketq._may_consume(p_group_id))
          and (not exists (select 1 from bucketq.consumer_group g join bucketq.group_access a on a.group_id = g.group_id
                            where g.topic_id = p_topic_id)
               or exists (select 1 from bucketq.consumer_group g
                           where g.topic_id = p_topic_id
                             and exists (select 1 from bucketq.group_access a where a.group_id = g.group_id)
                             and bucketq._may_consume(g.group_id))))
$$;

comment on function bucketq._may_read_payloads(int, int) is
'True when the views show the caller payloads and headers of the topic (and, with p_group_id, of that group''s dead letters): no restricted group reads the topic or the caller may consume one of them (and the given group); the schema owner and bucketq_admin always.';
