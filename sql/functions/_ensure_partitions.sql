-- Partitions from the one holding now() to `ahead` intervals past it. By default as few
-- as keep an hour of slack (workers call maintain() every minute; a send that finds no
-- partition makes one itself): those that start within the next hour, up to three
-- (_partitions_ahead). Every empty partition costs each statement over the log an index
-- scan to set up (a generic plan cannot prune by bucket or position): three ahead
-- instead of one made a trickle send, claim and ack 1.4x slower, and one ahead instead
-- of none a claim of one message 10 to 15% slower (docs/design/log-cursor.md).
create or replace function bucketq._ensure_partitions(p_topic bucketq.topic, ahead int default null)
returns int
language plpgsql as $$
declare
  lo timestamptz := date_bin(p_topic.partition_interval, bucketq._now(), timestamptz '2000-01-01 00:00:00+00');
  made int := 0;
begin
  ahead := coalesce(ahead, bucketq._partitions_ahead(p_topic.partition_interval));
  for i in 0 .. ahead loop
    if bucketq._create_partitions(p_topic.topic_id, lo + p_topic.partition_interval * i,
                                  lo + p_topic.partition_interval * (i + 1)) then
      made := made + 1;
    end if;
  end loop;
  return made;
end $$;
