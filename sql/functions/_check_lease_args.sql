create or replace function bucketq._check_lease_args(fn text, msg_ids bigint[], lease_tokens bigint[]) returns void
language plpgsql immutable as $$
begin
  if msg_ids is null or lease_tokens is null or cardinality(msg_ids) <> cardinality(lease_tokens) then
    raise exception '%: msg_ids and lease_tokens must be arrays of the same length (got % and %)', fn,
      coalesce(cardinality(msg_ids)::text, 'NULL'), coalesce(cardinality(lease_tokens)::text, 'NULL')
      using errcode = 'BQ005', hint = 'Pass the msg_id and lease_token of each claimed message, in the same order, as returned by bucketq.claim.';
  end if;
  if array_position(msg_ids, null) is not null or array_position(lease_tokens, null) is not null then
    raise exception '%: msg_ids and lease_tokens must not contain NULL', fn
      using errcode = 'BQ005', hint = 'Pass the msg_id and lease_token of each claimed message as returned by bucketq.claim.';
  end if;
end $$;
