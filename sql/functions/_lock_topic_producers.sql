-- Hold a topic's producers back: the advisory lock (bucketq namespace, topic_id) in
-- exclusive mode, which every send holds shared until its transaction ends. Taken in
-- turns, not by queuing for it (_lock_in_turns): a request queued behind a long
-- producer transaction would hold up every later send on the topic (they queue behind
-- it) for as long as that transaction runs (issue 13, item 20). In flight short sends
-- finish, later ones wait 50 ms at most.
create or replace function bucketq._lock_topic_producers(fn text, p_topic bucketq.topic) returns void
language sql as $$
  select bucketq._lock_in_turns(fn, p_topic.topic_id,
           format('topic %s is busy: producer transactions held it', p_topic.name),
           'A producer transaction that sent to this topic is still open. Retry later, or raise lock_timeout.');
$$;

comment on function bucketq._lock_topic_producers(text, bucketq.topic) is
'Takes the topic''s producer lock exclusively (create_group, maintain) in turns of 50 ms, so sends are never held up for longer than that by the wait.';
