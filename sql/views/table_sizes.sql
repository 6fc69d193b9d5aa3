create or replace view bucketq.table_sizes as
select c.relname as relation,
       case c.relkind when 'p' then 'partitioned table' when 'r' then 'table' when 'i' then 'index' else c.relkind::text end as kind,
       coalesce(parent.relname, '') as partition_of,
       case when c.relkind = 'p'
            then (select coalesce(sum(pg_total_relation_size(pt.relid)), 0) from pg_partition_tree(c.oid) pt where pt.isleaf)
            else pg_total_relation_size(c.oid) end as total_bytes,
       pg_size_pretty(case when c.relkind = 'p'
            then (select coalesce(sum(pg_total_relation_size(pt.relid)), 0) from pg_partition_tree(c.oid) pt where pt.isleaf)
            else pg_total_relation_size(c.oid) end) as total,
       s.n_live_tup as live_rows,
       s.n_dead_tup as dead_rows,
       s.last_autovacuum
  from pg_class c
  left join pg_inherits i on i.inhrelid = c.oid
  left join pg_class parent on parent.oid = i.inhparent
  left join pg_stat_user_tables s on s.relid = c.oid
 where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('r', 'p');

comment on view bucketq.table_sizes is
'Every bucketq table and partition: size on disk with indexes and TOAST (partitioned tables: the sum of their partitions), live and dead rows, last autovacuum.';
