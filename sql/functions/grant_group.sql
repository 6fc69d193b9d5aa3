create or replace function bucketq.grant_group(group_name text, role_name text) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_variable
declare
  g bucketq.consumer_group;
begin
  select * into g from bucketq.consumer_group x where x.name = group_name;
  if not found then
    perform bucketq._group(group_name);  -- raises unknown group
  end if;
  if role_name is null or not exists (select 1 from pg_catalog.pg_roles r where r.rolname = role_name) then
    raise exception 'grant_group: role % does not exist', bucketq._quote_input(role_name)
      using errcode = 'BQ005', hint = 'Create the role first (create role ... in role bucketq_consumer), then grant it the group.';
  end if;
  insert into bucketq.group_access (group_id, role_name) values (g.group_id, role_name)
  on conflict do nothing;
  return found;
end $$;

comment on function bucketq.grant_group(text, text) is
'Restrict a consumer group to the members of the given roles (call once per role; the first call closes the group to every other bucketq_consumer). The schema owner and bucketq_admin always may consume it. Returns false when the role had it already.';
