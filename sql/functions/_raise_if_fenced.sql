-- A lease whose token still matches but whose claimer no longer owns the bucket at
-- the lease's epoch: that consumer was fenced (its session expired, the bucket moved).
create or replace function bucketq._raise_if_fenced(fn text, g bucketq.consumer_group, msg_ids bigint[], lease_tokens bigint[])
returns void
language plpgsql as $$
declare
  v_fenced bigint[];
  v_consumer text;
begin
  select array_agg(i.msg_id order by i.msg_id), min(i.consumer_id) into v_fenced, v_consumer
    from unnest(msg_ids, lease_tokens) as u(id, tok)
    join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = u.id and i.lease_token = u.tok and i.state = 1
   where bucketq._may_act_as(g.group_id, i.consumer_id) -- only the caller's leases: no news of others
     and not exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket
                        and o.owner = i.consumer_id and o.epoch = i.epoch);
  if v_fenced is not null then
    raise exception '%: consumer % no longer owns the buckets of messages % in group % (fenced: the bucket moved to another consumer or a newer epoch)',
      fn, v_consumer, bucketq._id_list(v_fenced), g.name
      using errcode = 'BQ008',
            detail = 'Nothing was acked or nacked.',
            hint = 'Roll back: the effects of this transaction must not commit; the new owner delivers these messages. Heartbeat more often than the session timeout, then claim again.';
  end if;
end $$;
