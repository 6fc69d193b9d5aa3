-- Locked claims: rows still there and unleased whose bucket this consumer does not own
-- any more: it was fenced (its session expired, the bucket moved).
create or replace function bucketq._raise_if_fenced_locked(fn text, g bucketq.consumer_group, p_msg_ids bigint[], p_consumer text)
returns void
language plpgsql as $$
declare
  v_fenced bigint[];
begin
  select array_agg(i.msg_id order by i.msg_id) into v_fenced
    from bucketq.inbox i
   where i.group_id = g.group_id and i.msg_id = any(p_msg_ids) and i.lease_token is null and i.state in (0, 3)
     and bucketq._xact_holds(pg_current_xact_id(), i.xmax) -- only rows this transaction holds: no news of others
     and not exists (select 1 from bucketq.bucket_owner o
                      where o.group_id = g.group_id and o.bucket = i.bucket and o.owner = p_consumer);
  if v_fenced is not null then
    raise exception '%: consumer % no longer owns the buckets of messages % in group % (fenced: the bucket moved to another consumer)',
      fn, p_consumer, bucketq._id_list(v_fenced), g.name
      using errcode = 'BQ008',
            detail = 'Nothing was acked or nacked.',
            hint = 'Roll back: the effects of this transaction must not commit; the new owner delivers these messages. Heartbeat more often than the session timeout, then claim again.';
  end if;
end $$;
