-- Hold a topic's producers back: the advisory lock (bucketq namespace, topic_id) in
-- exclusive mode, which every send holds shared until its transaction ends. Taken in
-- turns, not by queuing for it: a request queued behind a long producer transaction
-- would hold up every later send on the topic (they queue behind it) for as long as
-- that transaction runs (issue 13, item 20). So: try; else queue for at most 50 ms (in
-- flight short sends finish, later ones wait that long at most), step out of the queue
-- for 50 ms so the sends that queued behind us go through, and again. Waits without
-- end, as a lock would, unless the caller set lock_timeout: then it raises 55P03 after
-- about that long. statement_timeout and cancels end it as usual.
create or replace function bucketq._lock_topic_producers(fn text, p_topic bucketq.topic) returns void
language plpgsql as $$
declare
  v_saved text := current_setting('lock_timeout');
  v_limit interval;
  v_deadline timestamptz;
begin
  if pg_try_advisory_xact_lock(bucketq._lock_ns(), p_topic.topic_id) then
    return;
  end if;
  v_limit := nullif(v_saved, '0')::interval;
  v_deadline := clock_timestamp() + v_limit;
  loop
    begin
      perform set_config('lock_timeout', case when v_limit < interval '50 ms' then v_saved else '50ms' end, true);
      perform pg_advisory_xact_lock(bucketq._lock_ns(), p_topic.topic_id);
      perform set_config('lock_timeout', v_saved, true);
      return;
    exception when lock_not_available then
      null; -- the setting is back to v_saved with the subtransaction
    end;
    if clock_timestamp() >= v_deadline then
      raise exception '%: topic % is busy: producer transactions held it for longer than lock_timeout (%)', fn, p_topic.name, v_saved
        using errcode = '55P03',
              hint = 'A producer transaction that sent to this topic is still open. Retry later, or raise lock_timeout.';
    end if;
    perform pg_sleep(0.05);
  end loop;
end $$;

comment on function bucketq._lock_topic_producers(text, bucketq.topic) is
'Takes the topic''s producer lock exclusively (create_group, rewind) in turns of 50 ms, so sends are never held up for longer than that by the wait.';
