-- Hand leased rows back: a head becomes ready, a tail waits behind its head again. The
-- interrupted attempt counts only for heads listed in p_counted (a tail row may never
-- have reached its handler). Returns the rows with their attempts.
create or replace function bucketq._unlease(p_group_id int, p_msg_ids bigint[], p_counted bigint[] default '{}')
returns table (msg_id bigint, attempts int, head boolean)
language sql as $$
  update bucketq.inbox i
     set state = case when h.head then 0 else 3 end,
         attempts = case when h.head and i.msg_id = any(p_counted) then i.attempts else greatest(i.attempts - 1, 0) end,
         lease_token = null, available_at = null, consumer_id = null, epoch = null
    from (select x.msg_id,
                 x.key_id is null
                 or not exists (select 1 from bucketq.inbox y
                                 where y.group_id = p_group_id and y.key_id = x.key_id and y.key_seq < x.key_seq) as head
            from bucketq.inbox x
           where x.group_id = p_group_id and x.msg_id = any(p_msg_ids) and x.state + 0 = 1) h
   where i.group_id = p_group_id and i.msg_id = h.msg_id
  returning i.msg_id, i.attempts, h.head
$$;
