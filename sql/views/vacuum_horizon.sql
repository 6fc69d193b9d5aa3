create or replace view bucketq.vacuum_horizon as
select 'session' as kind,
       a.pid::text as holder,
       a.usename::text as role,
       a.datname::text as database,
       a.state,
       age(a.backend_xmin) as xmin_age,
       now() - a.xact_start as transaction_age,
       left(a.query, 200) as query
  from pg_stat_activity a
 where a.backend_xmin is not null
union all
select 'replication slot', s.slot_name::text, null, s.database::text, case when s.active then 'active' else 'inactive' end,
       greatest(age(s.xmin), age(s.catalog_xmin)), null, null
  from pg_replication_slots s
 where s.xmin is not null or s.catalog_xmin is not null
union all
select 'prepared transaction', p.gid, p.owner::text, p.database::text, 'prepared', age(p.transaction), now() - p.prepared, null
  from pg_prepared_xacts p;

comment on view bucketq.vacuum_horizon is
'What holds back vacuum (the xmin horizon), oldest first when ordered by xmin_age desc: sessions with an open snapshot, replication slots, prepared transactions. A long transaction anywhere keeps dead queue rows from being cleaned.';
