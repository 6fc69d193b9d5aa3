-- Is the caller (bucketq._caller()) a member of role_name? False for a role that does
-- not exist (a dropped role must not make pg_has_role fail).
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every
-- call (its subquery keeps Postgres from inlining it).
create or replace function bucketq._caller_is(role_name name) returns boolean
language plpgsql stable as $$
begin
  return case when exists (select 1 from pg_catalog.pg_roles r where r.rolname = _caller_is.role_name)
              then pg_catalog.pg_has_role(bucketq._caller(), _caller_is.role_name, 'member')
              else false end;
end $$;

comment on function bucketq._caller_is(name) is
'True when the caller (bucketq._caller()) is a member of the role; false when the role does not exist.';
