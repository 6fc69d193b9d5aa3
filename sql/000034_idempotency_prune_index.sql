-- bucketq 000034: the index maintain() prunes idempotency keys by leads with sent_at.
--
-- It was (topic_id, sent_at). A send that repeats idempotency keys looks each up by
-- (topic_id, idempotency_key), the primary key; with statistics that price a topic at a
-- few keys (many small topics beside a big one), the planner took the (topic_id, sent_at)
-- index instead, with topic_id alone as its condition, and read all of the topic's keys
-- for each key looked up (test/sql-plans.test.ts). Led by sent_at, the index serves the
-- pruning (sent_at below a bound, then the topic) and no lookup by topic: those can only
-- take the primary key.
--
-- Building it reads the table once and holds its writers (sends with idempotency keys)
-- back meanwhile: 0.3 s per million keys on a 2-core machine.
create index idempotency_prune on bucketq.idempotency (sent_at, topic_id);
drop index bucketq.idempotency_sent_at;

insert into bucketq.migration (version, name) values (34, 'idempotency_prune_index');
