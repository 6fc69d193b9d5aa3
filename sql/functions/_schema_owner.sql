-- The role that owns schema bucketq (_now honours the test clock for its members).
create or replace function bucketq._schema_owner() returns oid
language sql stable as $$
  select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'bucketq'
$$;

comment on function bucketq._schema_owner() is
'Internal: the oid of the role that owns schema bucketq.';
