-- The refusal outside READ COMMITTED of the functions that wait for other sessions'
-- locks and then count on reading what those sessions committed: claim and
-- claim_locked, ack, nack and reject, rewind and skip_to_latest, join, heartbeat and
-- leave, replay_dead, delete_group. Their callers test the level inline (a simple
-- expression); this runs only to raise.
--
-- A claim locks a bucket's cursor row, then counts on its next statement seeing any
-- batch committed before that lock; a settle, on seeing whether its batch is still the
-- bucket's latest, its lease unexpired and its claimer the owner; rewind,
-- skip_to_latest and the lobby's releases (join, heartbeat, leave: _release) lock the
-- cursors, waiting for the acks under way, then read each bucket's position;
-- replay_dead waits for the acks of its keys, then promotes their heads. A REPEATABLE
-- READ or SERIALIZABLE snapshot may be older than all of that: a claim handed out again
-- what another claim had just taken; an ack settled, and recorded as delivered, a batch
-- whose lease had expired and whose messages had been handed out and acked since
-- (docs/design/log-cursor.md, thirty-eighth and thirty-ninth passes); rewind and leave
-- handed out again messages acked while they waited, and skip_to_latest recorded them
-- as skipped beside their delivery, and delete_group left progress rows behind
-- (fortieth pass). The log's rows are never updated, so such a snapshot meets no
-- serialization failure there.
create or replace function bucketq._raise_not_read_committed(fn text, g bucketq.consumer_group)
returns void
language plpgsql as $$
declare
  v_kind text := case when fn in ('claim', 'claim_locked') then 'claim'
                      when fn in ('ack', 'nack', 'reject') then 'settle'
                      when fn = 'replay_dead' then 'replay'
                      when fn = 'delete_group' then 'delete' else 'reset' end;
begin
  raise exception '%: runs only in READ COMMITTED transactions, and this one is %', fn,
    upper(current_setting('transaction_isolation'))
    using errcode = 'BQ005',
          detail = case v_kind
            when 'claim' then format('Group %s: a snapshot older than the claim could hand out messages another claim has taken. Nothing was claimed.', g.name)
            when 'reset' then format('Group %s: a snapshot older than the %s could miss batches acked while it waited for them, and deliver or record their messages again. Nothing was changed.', g.name, fn)
            when 'delete' then format('Group %s: a snapshot older than the delete could miss progress its batches wrote while it waited for them, and leave those rows behind. Nothing was changed.', g.name)
            when 'replay' then format('Group %s: a snapshot older than the replay could miss the acks it waited for, and leave the replayed messages waiting behind messages already acked. Nothing was replayed.', g.name)
            else format('Group %s: a snapshot older than the %s could settle a lease that expired or moved since, and record as delivered again messages another consumer has settled. Nothing was changed.', g.name, fn) end,
          hint = case v_kind
            when 'claim' then 'Claim in a READ COMMITTED transaction (BEGIN ISOLATION LEVEL READ COMMITTED), or set default_transaction_isolation to read committed for this session; the worker does so on its own connections, and the client''s claim() on its pool.'
            when 'settle' then format('Call %s, and write the handler''s effects, in a READ COMMITTED transaction (BEGIN ISOLATION LEVEL READ COMMITTED), or set default_transaction_isolation to read committed for this session; the worker does so on its own connections, and the client''s ack() and nack() on its pool.', fn)
            else format('Call %s in a READ COMMITTED transaction (BEGIN ISOLATION LEVEL READ COMMITTED), or set default_transaction_isolation to read committed for this session; the worker, the CLI, the console and the client''s methods do so.', fn) end;
end $$;

comment on function bucketq._raise_not_read_committed(text, bucketq.consumer_group) is
'Internal: raises BQ005 for fn (claim, claim_locked, ack, nack, reject, rewind, skip_to_latest, join, heartbeat, leave, replay_dead or delete_group) called outside READ COMMITTED, its detail and hint worded for that kind of call.';
