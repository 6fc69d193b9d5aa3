-- Hand leased rows back: a head becomes ready, a tail waits behind its head again. The
-- interrupted attempt counts only for heads listed in p_counted (a tail row may never
-- have reached its handler). Returns the rows with their attempts.
create or replace function bucketq._unlease(p_group_id int, p_msg_ids bigint[], p_counted bigint[] default '{}')
returns table (msg_id bigint, attempts int, head boolean)
language plpgsql as $$
#variable_conflict use_column
declare
  v_ids bigint[];
  v_attempts int[];
  v_heads boolean[];
  v_keys bigint[];
begin
  with u as (
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
    returning i.msg_id, i.attempts, h.head, i.key_id
  )
  select array_agg(u.msg_id), array_agg(u.attempts), array_agg(u.head),
         array_agg(distinct u.key_id) filter (where not u.head)
    into v_ids, v_attempts, v_heads, v_keys
    from u;
  -- A tail waits behind an earlier row of its key. If that row waits too (a replayed
  -- dead letter that was waiting for this lease to end), nothing in flight is left to
  -- promote it: promote it now, unless some row of the key is still active.
  if v_keys is not null then
    perform bucketq._promote(p_group_id, v_keys, bucketq._now(), true);
  end if;
  return query select * from unnest(v_ids, v_attempts, v_heads);
end $$;
