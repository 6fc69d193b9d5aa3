-- Every consumer-side function finds its group through _group(), so the check lives
-- there. session_user: inside these SECURITY DEFINER functions current_user is the owner.
create or replace function bucketq._group(group_name text) returns bucketq.consumer_group
language plpgsql stable as $$
declare
  g bucketq.consumer_group;
begin
  select * into g from bucketq.consumer_group where name = group_name;
  if not found then
    raise exception 'unknown consumer group: %', bucketq._quote_input(group_name)
      using errcode = 'BQ003',
            hint = 'Create it first with bucketq.create_group(group_name => ..., topic => ...); list groups with: select name, topic from bucketq.groups;';
  end if;
  if exists (select 1 from bucketq.group_access a where a.group_id = g.group_id)
     and not exists (select 1 from bucketq.group_access a
                      where a.group_id = g.group_id
                        -- CASE: a dropped role must not make pg_has_role fail
                        and (case when exists (select 1 from pg_catalog.pg_roles r where r.rolname = a.role_name)
                                  then pg_catalog.pg_has_role(session_user, a.role_name, 'member') else false end))
     and not pg_catalog.pg_has_role(session_user, (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'bucketq'), 'member')
     and not (case when exists (select 1 from pg_catalog.pg_roles r where r.rolname = 'bucketq_admin')
                   then pg_catalog.pg_has_role(session_user, 'bucketq_admin', 'member') else false end) then
    raise exception 'permission denied for consumer group %: role % is not among its consumers', g.name, session_user
      using errcode = '42501',
            hint = format('An admin grants it with: select bucketq.grant_group(%L, %L);', g.name, session_user);
  end if;
  return g;
end $$;
