-- The schema owner (and its members, such as superusers) and bucketq_admin may do
-- everything, restricted groups and topics included.
create or replace function bucketq._caller_is_admin() returns boolean
language sql stable as $$
  select pg_catalog.pg_has_role(bucketq._caller(), (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'bucketq'), 'member')
      or bucketq._caller_is(bucketq._role('admin'))
$$;

comment on function bucketq._caller_is_admin() is
'True when the caller is (a member of) the schema owner or of bucketq_admin.';
