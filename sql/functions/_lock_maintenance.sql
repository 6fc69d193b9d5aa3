-- maintain()'s lock, the advisory lock (bucketq namespace, 0), taken in turns of 50 ms
-- instead of by queuing for it without end. maintain() holds it while it waits, in
-- turns, for topics' producers (to raise a log floor, to rotate the per-key counters);
-- a send holding its topic's producer lock may need this lock too, to create a missing
-- partition. While those two wait on each other, a session queued here for longer than
-- deadlock_timeout runs the deadlock check, which finds the cycle through the queue and
-- fails that session ("deadlock detected": seen with 4 concurrent maintain() calls and
-- a producer whose partition was missing). A wait of 50 ms never gets to that check;
-- maintain() gives up on the producers after 500 ms and commits, and the lock is free.
-- Waits without end, as a lock would, unless the caller set lock_timeout: then it
-- raises 55P03 after about that long. statement_timeout and cancels end it as usual.
create or replace function bucketq._lock_maintenance(fn text) returns void
language plpgsql as $$
declare
  v_saved text := current_setting('lock_timeout');
  v_limit interval := nullif(v_saved, '0')::interval;
  v_deadline timestamptz := clock_timestamp() + nullif(v_saved, '0')::interval;
begin
  loop
    begin
      perform set_config('lock_timeout', case when v_limit < interval '50 ms' then v_saved else '50ms' end, true);
      perform pg_advisory_xact_lock(bucketq._lock_ns(), 0);
      perform set_config('lock_timeout', v_saved, true);
      return;
    exception when lock_not_available then
      null; -- the setting is back to v_saved with the subtransaction
    end;
    if clock_timestamp() >= v_deadline then
      raise exception '%: bucketq maintenance is busy: maintain(), or a topic being created or deleted, held its lock for longer than lock_timeout (%)', fn, v_saved
        using errcode = '55P03',
              hint = 'Retry later, or raise lock_timeout. bucketq.maintain() usually takes well under a second; a longer one waits for a lock of its own (see pg_stat_activity).';
    end if;
  end loop;
end $$;

comment on function bucketq._lock_maintenance(text) is
'Takes maintain()''s advisory lock (create_topic, delete_topic, maintain(wait => true), a send that must create a missing partition) in turns of 50 ms, so that no wait for it reaches deadlock_timeout while maintain() waits, in turns, for producers.';
