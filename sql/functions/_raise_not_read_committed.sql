-- The refusal outside READ COMMITTED of claim and claim_locked, and of ack, nack and
-- reject (their callers test the level inline, a simple expression; this runs only to
-- raise). A claim locks a bucket's cursor row, then counts on its next statement seeing
-- any batch committed before that lock; a settle, likewise, on seeing whether its batch
-- is still the bucket's latest, its lease unexpired and its claimer the owner. A
-- REPEATABLE READ or SERIALIZABLE snapshot may be older: a claim handed out again what
-- another claim had just taken, and an ack settled, and recorded as delivered, a batch
-- whose lease had expired and whose messages another claim had handed out and acked
-- since (docs/design/log-cursor.md, thirty-eighth and thirty-ninth passes). The log's
-- rows are never updated, so such a snapshot meets no serialization failure there.
create or replace function bucketq._raise_not_read_committed(fn text, g bucketq.consumer_group)
returns void
language plpgsql as $$
declare
  v_claim boolean := fn in ('claim', 'claim_locked');
begin
  raise exception '%: runs only in READ COMMITTED transactions, and this one is %', fn,
    upper(current_setting('transaction_isolation'))
    using errcode = 'BQ005',
          detail = case when v_claim
            then format('Group %s: a snapshot older than the claim could hand out messages another claim has taken. Nothing was claimed.', g.name)
            else format('Group %s: a snapshot older than the %s could settle a lease that expired or moved since, and record as delivered again messages another consumer has settled. Nothing was changed.', g.name, fn) end,
          hint = case when v_claim
            then 'Claim in a READ COMMITTED transaction (BEGIN ISOLATION LEVEL READ COMMITTED), or set default_transaction_isolation to read committed for this session; the worker does so on its own connections.'
            else format('Call %s, and write the handler''s effects, in a READ COMMITTED transaction (BEGIN ISOLATION LEVEL READ COMMITTED), or set default_transaction_isolation to read committed for this session; the worker does so on its own connections.', fn) end;
end $$;

comment on function bucketq._raise_not_read_committed(text, bucketq.consumer_group) is
'Internal (claims and settles): raises BQ005 for claim, claim_locked, ack, nack or reject outside READ COMMITTED.';
