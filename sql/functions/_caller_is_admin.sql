-- The schema owner (and its members, such as superusers) and bucketq_admin may do
-- everything, restricted groups and topics included.
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every
-- call (121 µs a nack on Postgres 15; its subquery keeps Postgres from inlining it).
create or replace function bucketq._caller_is_admin() returns boolean
language plpgsql stable as $$
begin
  return pg_catalog.pg_has_role(bucketq._caller(), (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'bucketq'), 'member')
      or bucketq._caller_is(bucketq._role('admin'));
end $$;

comment on function bucketq._caller_is_admin() is
'True when the caller is (a member of) the schema owner or of bucketq_admin.';
