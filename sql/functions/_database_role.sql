-- The per-database name of a bucketq role: bucketq_<kind>_<database>, e.g.
-- bucketq_consumer_shop for database shop (a database name too long for the 63
-- characters of a role name is cut and given a hash of itself).
create or replace function bucketq._database_role(kind text) returns name
language sql stable parallel safe as $$
  select case when length('bucketq_' || kind || '_' || current_database()) <= 63
              then 'bucketq_' || kind || '_' || current_database()
              else 'bucketq_' || kind || '_' || left(current_database(), 40) || '_' || left(md5(current_database()), 8) end::name
$$;

comment on function bucketq._database_role(text) is
'The per-database role name for kind producer, consumer, monitor or admin: bucketq_<kind>_<database>. When it exists, it replaces the cluster-wide bucketq_<kind> in this database (see bucketq._role).';
