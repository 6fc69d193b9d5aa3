create or replace function bucketq._check_locked_args(fn text, g bucketq.consumer_group, msg_ids bigint[], consumer_id text) returns void
language plpgsql as $$
begin
  if msg_ids is null or array_position(msg_ids, null) is not null then
    raise exception '%: msg_ids must be an array without NULL (group %)', fn, g.name
      using errcode = 'BQ005', hint = 'Pass the msg_id of each claimed message, as returned by bucketq.claim_locked.';
  end if;
  if consumer_id is null then
    raise exception '%: lease_tokens => NULL (messages claimed with claim_locked) needs the consumer_id that claimed them (group %)', fn, g.name
      using errcode = 'BQ005',
            hint = 'Pass consumer_id => ''...'', the one given to claim_locked; or pass the lease_tokens that claim returned.';
  end if;
end $$;
