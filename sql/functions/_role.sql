-- The role that holds a kind of bucketq rights (producer, consumer, monitor, admin) in
-- this database: the per-database role bucketq_<kind>_<database> when it exists (see
-- bucketq._create_database_roles), else the cluster-wide bucketq_<kind>. Roles are
-- cluster-wide in Postgres: a member of bucketq_consumer is one in every database of
-- the cluster; a member of bucketq_consumer_shop only where that role holds the grants,
-- in database shop.
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every
-- call (its subquery keeps Postgres from inlining it).
create or replace function bucketq._role(kind text) returns name
language plpgsql stable parallel safe as $$
begin
  return case when exists (select 1 from pg_catalog.pg_roles r where r.rolname = bucketq._database_role(kind))
              then bucketq._database_role(kind)
              else ('bucketq_' || kind)::name end;
end $$;

comment on function bucketq._role(text) is
'The role holding a kind of bucketq rights in this database: bucketq_<kind>_<database> when it exists, else the cluster-wide bucketq_<kind>.';
