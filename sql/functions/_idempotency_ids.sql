-- For send_batch, when some of its idempotency keys were sent before: each key's message
-- id, one probe of the primary key per key. Sequential scans are off because statistics
-- that price a key as common (n_distinct near 1) made a scan of the whole table per key
-- look cheaper than the probe (test/sql-plans.test.ts); OFFSET 0 keeps the probe from
-- being flattened into a join, which with statistics that price a topic at a few keys
-- read all of the topic's keys.
create or replace function bucketq._idempotency_ids(p_topic_id int, p_keys text[])
returns bigint[]
language sql stable
set search_path = pg_catalog, bucketq, pg_temp
set enable_seqscan = off
as $$
  select array_agg(e.msg_id order by u.o)
    from unnest(p_keys) with ordinality as u(k, o)
    left join lateral (select e.msg_id from bucketq.idempotency e
                        where e.topic_id = p_topic_id and e.idempotency_key = u.k offset 0) e on true
$$;

comment on function bucketq._idempotency_ids(int, text[]) is
'For send_batch: the message id recorded for each of these idempotency keys of the topic (NULL for a NULL or unknown key), in the order of p_keys; one primary-key probe per key.';
