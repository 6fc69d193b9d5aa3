-- bucketq 000010: consumers for their groups only. A group with access rows may be
-- consumed (join, heartbeat, claim, ack, nack, leave) only by members of those roles,
-- the schema owner and bucketq_admin; a group without any stays open to every
-- bucketq_consumer, as before.

create table bucketq.group_access (
  group_id  int not null references bucketq.consumer_group on delete cascade,
  role_name name not null,
  primary key (group_id, role_name)
);

-- Every consumer-side function finds its group through _group(), so the check lives
-- there. session_user: inside these SECURITY DEFINER functions current_user is the owner.
create or replace function bucketq._group(group_name text) returns bucketq.consumer_group
language plpgsql stable as $$
declare
  g bucketq.consumer_group;
begin
  select * into g from bucketq.consumer_group where name = group_name;
  if not found then
    raise exception 'unknown consumer group: %', coalesce(quote_literal(group_name), 'NULL')
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

create function bucketq.grant_group(group_name text, role_name text) returns boolean
language plpgsql as $$
#variable_conflict use_variable
declare
  g bucketq.consumer_group;
begin
  select * into g from bucketq.consumer_group x where x.name = group_name;
  if not found then
    perform bucketq._group(group_name);  -- raises unknown group
  end if;
  if role_name is null or not exists (select 1 from pg_catalog.pg_roles r where r.rolname = role_name) then
    raise exception 'grant_group: role % does not exist', coalesce(quote_literal(role_name), 'NULL')
      using errcode = 'BQ005', hint = 'Create the role first (create role ... in role bucketq_consumer), then grant it the group.';
  end if;
  insert into bucketq.group_access (group_id, role_name) values (g.group_id, role_name)
  on conflict do nothing;
  return found;
end $$;

comment on function bucketq.grant_group(text, text) is
'Restrict a consumer group to the members of the given roles (call once per role; the first call closes the group to every other bucketq_consumer). The schema owner and bucketq_admin always may consume it. Returns false when the role had it already.';

create function bucketq.revoke_group(group_name text, role_name text) returns boolean
language plpgsql as $$
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

alter function bucketq.grant_group(text, text) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.revoke_group(text, text) security definer set search_path = pg_catalog, bucketq, pg_temp;
select bucketq._grant_roles();

insert into bucketq.migration (version, name) values (10, 'group_access');
