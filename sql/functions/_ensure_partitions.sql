-- Partitions from the one holding now() to `ahead` intervals past it.
create or replace function bucketq._ensure_partitions(p_topic bucketq.topic, ahead int default 3)
returns int
language plpgsql as $$
declare
  lo timestamptz := date_bin(p_topic.partition_interval, bucketq._now(), timestamptz '2000-01-01 00:00:00+00');
  made int := 0;
begin
  for i in 0 .. ahead loop
    if bucketq._create_partitions(p_topic.topic_id, lo + p_topic.partition_interval * i,
                                  lo + p_topic.partition_interval * (i + 1)) then
      made := made + 1;
    end if;
  end loop;
  return made;
end $$;
