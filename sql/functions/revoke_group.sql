create or replace function bucketq.revoke_group(group_name text, role_name text) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_variable
declare
  g bucketq.consumer_group;
begin
  select * into g from bucketq.consumer_group x where x.name = group_name;
  if not found then
    perform bucketq._group(group_name);
  end if;
  delete from bucketq.group_access a where a.group_id = g.group_id and a.role_name = revoke_group.role_name;
  return found;
end $$;

comment on function bucketq.revoke_group(text, text) is
'Take a role''s access to a consumer group back. When no role is left the group is open to every bucketq_consumer again. Returns false when the role did not have it.';
