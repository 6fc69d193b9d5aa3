-- maintain()'s lock, the advisory lock (bucketq namespace, 0), taken in turns
-- (_lock_in_turns) instead of by queuing for it without end. maintain() holds it while
-- it waits, in turns, for topics' producers (to raise a log floor, to rotate the
-- per-key counters); a send holding its topic's producer lock may need this lock too,
-- to create a missing partition. While those two wait on each other, a session queued
-- here for longer than deadlock_timeout runs the deadlock check, which finds the cycle
-- through the queue and fails that session ("deadlock detected": seen with 4 concurrent
-- maintain() calls and a producer whose partition was missing). A wait of 50 ms never
-- gets to that check; maintain() gives up on the producers after 500 ms and commits,
-- and the lock is free.
create or replace function bucketq._lock_maintenance(fn text) returns void
language sql as $$
  select bucketq._lock_in_turns(fn, 0,
           'bucketq maintenance is busy: maintain(), or a topic being created or deleted, held its lock',
           'Retry later, or raise lock_timeout. bucketq.maintain() usually takes well under a second; a longer one waits for a lock of its own (see pg_stat_activity).');
$$;

comment on function bucketq._lock_maintenance(text) is
'Takes maintain()''s advisory lock (create_topic, delete_topic, maintain(wait => true), a send that must create a missing partition) in turns of 50 ms, so that no wait for it reaches deadlock_timeout while maintain() waits, in turns, for producers.';
