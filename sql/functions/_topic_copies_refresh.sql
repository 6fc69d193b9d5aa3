-- Every topic's copies made again, and the dispatch: after the definitions were applied
-- (the copies are of the old ones, and the public functions were written back without
-- their branches), and to repair a database restored without the bucketq_t<id> schemas.
create or replace function bucketq._topic_copies_refresh() returns int
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
as $$
declare
  v_id int;
  v_count int := 0;
  n record;
begin
  -- create_topic and delete_topic make and drop copies under this lock too.
  perform bucketq._lock_maintenance('_topic_copies_refresh');
  for n in select substring(s.nspname from '^bucketq_t([0-9]+)$')::int as topic_id from pg_catalog.pg_namespace s
            where s.nspname ~ '^bucketq_t[0-9]+$'
              and not exists (select 1 from bucketq.topic x where 'bucketq_t' || x.topic_id = s.nspname) loop
    perform bucketq._topic_copies_drop(n.topic_id);
  end loop;
  for v_id in select x.topic_id from bucketq.topic x order by x.topic_id loop
    perform bucketq._topic_copies(v_id);
    v_count := v_count + 1;
  end loop;
  perform bucketq._topic_dispatch();
  return v_count;
end $$;

comment on function bucketq._topic_copies_refresh() is
'Internal: makes every topic''s copies of the claim and ack paths again (bucketq._topic_copies) and writes the dispatch (bucketq._topic_dispatch); drops copies left by deleted topics. bucketq migrate calls it whenever it applies the definitions. Returns how many topics it made copies for.';
