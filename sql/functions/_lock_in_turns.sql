-- An exclusive advisory lock (bucketq namespace, p_key), taken in turns rather than by
-- queuing for it without end: try; else queue for at most 50 ms, step out of the queue
-- for 50 ms, and again. Two reasons to wait this way (see its callers):
-- _lock_topic_producers: a request queued behind a long producer transaction would hold
-- up every later send on the topic (they queue behind it) for as long as that
-- transaction runs (issue 13, item 20); stepping out lets them through.
-- _lock_maintenance: a wait of 50 ms never reaches deadlock_timeout, so a waiter is not
-- failed by the deadlock check for a cycle that maintain() breaks itself.
-- Waits without end, as a lock would, unless the caller set lock_timeout: then it
-- raises 55P03 after about that long ("<fn>: <p_busy> for longer than lock_timeout").
-- statement_timeout and cancels end it as usual.
create or replace function bucketq._lock_in_turns(fn text, p_key int, p_busy text, p_hint text) returns void
language plpgsql as $$
declare
  v_saved text := current_setting('lock_timeout');
  v_limit interval;
  v_deadline timestamptz;
begin
  if pg_try_advisory_xact_lock(bucketq._lock_ns(), p_key) then
    return;
  end if;
  v_limit := nullif(v_saved, '0')::interval;
  v_deadline := clock_timestamp() + v_limit;
  loop
    begin
      perform set_config('lock_timeout', case when v_limit < interval '50 ms' then v_saved else '50ms' end, true);
      perform pg_advisory_xact_lock(bucketq._lock_ns(), p_key);
      perform set_config('lock_timeout', v_saved, true);
      return;
    exception when lock_not_available then
      null; -- the setting is back to v_saved with the subtransaction
    end;
    if clock_timestamp() >= v_deadline then
      raise exception '%: % for longer than lock_timeout (%)', fn, p_busy, v_saved
        using errcode = '55P03', hint = p_hint;
    end if;
    perform pg_sleep(0.05);
  end loop;
end $$;

comment on function bucketq._lock_in_turns(text, int, text, text) is
'Takes the advisory lock (bucketq namespace, p_key) exclusively in turns of 50 ms (queue at most 50 ms, step out 50 ms); raises 55P03 "<fn>: <p_busy> for longer than lock_timeout" with p_hint once the caller''s lock_timeout has passed. For _lock_topic_producers and _lock_maintenance.';
