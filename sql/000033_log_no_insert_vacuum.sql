-- bucketq 000033: no insert-triggered autovacuum on the log's partitions and on
-- bucketq.progress.
--
-- Both are append-only on the hot path (the log is never updated or deleted row by row;
-- progress only loses rows older than the topic's retention). An insert-triggered
-- vacuum finds nothing to remove there; what it is for is marking pages all-visible and
-- freezing them. Under a pinned xmin horizon (a replica's hot_standby_feedback, an idle
-- transaction, a logical slot) it cannot mark one page, so every pass rereads the whole
-- table, and the passes come as the table grows (every 20% of the log, every 5% of
-- progress; GIN's cleanup also rereads the whole delivery index each time): in a
-- 10-minute pinned soak that was 2 GB or more a minute by the end, on a machine that
-- had nothing to spare. Unpinned, the marks buy little: claims read the log's newest
-- pages, which no vacuum has reached yet. PgQ turns autovacuum off on its event tables
-- for the same reason.
--
-- What stays: ANALYZE (counted from inserts too), vacuums for dead rows (progress's
-- retention pruning), and the anti-wraparound vacuums, which cannot be turned off.
-- Partitions made from now on get the same setting (functions/_create_partitions.sql).
alter table bucketq.progress reset (autovacuum_vacuum_insert_scale_factor);
alter table bucketq.progress set (autovacuum_vacuum_insert_threshold = -1);

do $$
declare
  r record;
begin
  for r in select p.message_rel from bucketq.log_partition p
             join pg_class c on c.relname = p.message_rel
             join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'bucketq' loop
    execute format('alter table bucketq.%I set (autovacuum_vacuum_insert_threshold = -1, toast.autovacuum_vacuum_insert_threshold = -1)',
                   r.message_rel);
  end loop;
end $$;

insert into bucketq.migration (version, name) values (33, 'log_no_insert_vacuum');
