-- Owner (or a DBA) only: create this database's own bucketq roles and move every grant
-- to them. Afterwards the cluster-wide bucketq_producer, bucketq_consumer,
-- bucketq_monitor and bucketq_admin have no rights here; grant the per-database roles
-- (bucketq_<kind>_<database>) to the logins of this database instead. Needs CREATEROLE
-- (or a DBA creates the four NOLOGIN roles first; then this only moves the grants).
create or replace function bucketq._create_database_roles() returns setof name
language plpgsql as $$
declare
  k text;
  r name;
begin
  foreach k in array array['producer', 'consumer', 'monitor', 'admin'] loop
    r := bucketq._database_role(k);
    if not exists (select 1 from pg_catalog.pg_roles x where x.rolname = r) then
      execute format('create role %I nologin', r);
    end if;
    return next r;
  end loop;
  perform bucketq._grant_roles();
end $$;

comment on function bucketq._create_database_roles() is
'Owner only: create bucketq_producer_<db>, bucketq_consumer_<db>, bucketq_monitor_<db> and bucketq_admin_<db> for this database (if missing) and move every bucketq grant here from the cluster-wide roles to them. Returns the four role names.';
