-- May the caller act as this consumer of the group? Admins (and the schema owner) may
-- act as any; others only as a consumer their role joined (bucketq.consumer.joined_by).
create or replace function bucketq._may_act_as(p_group_id int, p_consumer text) returns boolean
language sql stable as $$
  select bucketq._caller_is_admin()
      or exists (select 1 from bucketq.consumer c
                  where c.group_id = p_group_id and c.consumer_id = p_consumer and c.joined_by = bucketq._caller())
$$;

comment on function bucketq._may_act_as(int, text) is
'True when the caller is an admin or the role that joined this consumer.';
