-- How far topic p_topic's log floor can rise now: the end of the oldest run of
-- partitions, from the current floor on and over by p_now, that every group has passed
-- (_log_pending). The current floor if none.
create or replace function bucketq._log_floor_reach(p_topic bucketq.topic, p_now timestamptz)
returns timestamptz
language plpgsql as $$
declare
  p bucketq.log_partition;
  v_floor timestamptz := p_topic.log_from;
begin
  for p in select * from bucketq.log_partition x
            where x.topic_id = p_topic.topic_id and x.upper_bound > p_topic.log_from and x.upper_bound <= p_now
            order by x.lower_bound loop
    exit when bucketq._log_pending(p_topic, greatest(p.lower_bound, p_topic.log_from), p.upper_bound);
    v_floor := p.upper_bound;
  end loop;
  return v_floor;
end $$;
