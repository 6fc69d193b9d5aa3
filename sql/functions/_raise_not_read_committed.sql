-- claim's and claim_locked's refusal outside READ COMMITTED (their callers test the
-- level inline, a simple expression; this runs only to raise). A claim locks a bucket's
-- cursor row, then counts on its next statement seeing any batch committed before that
-- lock. A REPEATABLE READ or SERIALIZABLE snapshot may be older: it handed out again what
-- another claim had just taken (docs/design/log-cursor.md, thirty-eighth pass).
create or replace function bucketq._raise_not_read_committed(fn text, g bucketq.consumer_group)
returns void
language plpgsql as $$
begin
  raise exception '%: runs only in READ COMMITTED transactions, and this one is %', fn,
    upper(current_setting('transaction_isolation'))
    using errcode = 'BQ005',
          detail = format('Group %s: a snapshot older than the claim could hand out messages another claim has taken. Nothing was claimed.', g.name),
          hint = 'Claim in a READ COMMITTED transaction (BEGIN ISOLATION LEVEL READ COMMITTED), or set default_transaction_isolation to read committed for this session; the worker does so on its own connections.';
end $$;

comment on function bucketq._raise_not_read_committed(text, bucketq.consumer_group) is
'Internal (claims): raises BQ005 for a claim outside READ COMMITTED.';
