-- May the caller consume this group? A group without access rows is open to every
-- bucketq_consumer; one with rows only to members of those roles, the schema owner and
-- bucketq_admin. SECURITY DEFINER: the views call it as their reader.
create or replace function bucketq._may_consume(p_group_id int) returns boolean
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every
-- call (67 µs here, twice a claim).
language plpgsql stable security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
begin
  return not exists (select 1 from bucketq.group_access a where a.group_id = p_group_id)
      or exists (select 1 from bucketq.group_access a where a.group_id = p_group_id and bucketq._caller_is(a.role_name))
      or bucketq._caller_is_admin();
end $$;

comment on function bucketq._may_consume(int) is
'True when the caller may consume the group: it has no access rows (grant_group), or the caller is a member of one of its roles, the schema owner or bucketq_admin.';
