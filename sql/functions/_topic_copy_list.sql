-- The list: the five bodies the public functions dispatch to (bucketq.claim calls
-- bucketq._claim or bucketq_t<id>._claim, and so on), and what they call on their hot
-- paths that reads the log. Functions off the list are called as they are.
create or replace function bucketq._topic_copy_list() returns text[]
language sql immutable as $$
  select array['_claim', '_claim_locked', '_ack', '_nack', '_record_attempt',
               '_log_busy', '_log_quiet', '_log_claim', '_log_claim_next', '_log_window', '_log_chunk', '_log_open',
               '_log_early_ahead', '_log_xip_committed', '_log_materialize', '_log_settle',
               '_log_holds_earlier', '_promote', '_promote_acked', '_log_expire_due', '_log_expire']
$$;

comment on function bucketq._topic_copy_list() is
'Internal: the functions each topic has its own copy of, in schema bucketq_t<topic_id> (see bucketq._topic_copies).';
