-- Has group g acked message p_msg_id (a delivery record of a single message, or in a
-- batch's 'done' row)? With p_caller: only acks by consumers that role joined (ack's
-- statuses must not tell a caller which ids exist).
create or replace function bucketq._delivered(g bucketq.consumer_group, p_msg_id bigint, p_caller name default null)
returns boolean
language sql stable as $$
  select exists (select 1 from bucketq.delivery d
                  where d.group_id = g.group_id and d.topic_id = g.topic_id and d.msg_id = p_msg_id
                    and (p_caller is null or exists (select 1 from bucketq.consumer c
                                                      where c.group_id = g.group_id and c.consumer_id = d.consumer_id
                                                        and c.joined_by = p_caller)))
      or exists (select 1 from bucketq.progress p
                  where p.group_id = g.group_id and p.kind = 1 and p.msg_ids @> array[p_msg_id]
                    and (p_caller is null or exists (select 1 from bucketq.consumer c
                                                      where c.group_id = g.group_id and c.consumer_id = p.consumer_id
                                                        and c.joined_by = p_caller)))
$$;
