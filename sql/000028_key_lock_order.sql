-- bucketq 000028: a send creates and locks its keys in one pass, in key order.
--
-- _take_key_seqs inserted a send's new keys, then locked its existing ones: a send of
-- keys b (existing) and c (new) held c while waiting for b, and deadlocked with a
-- transaction that held b and sent c next. Now one INSERT ... ON CONFLICT DO UPDATE
-- ... WHERE false inserts or locks each key in key order (the function lives in
-- sql/functions/_take_key_seqs.sql). The lock is FOR UPDATE (every column of topic_key
-- is a key column), not FOR NO KEY UPDATE; nothing takes a weaker lock on these rows,
-- so it waits on exactly what it waited on before.
comment on table bucketq.topic_key is
'One row per (topic, key), written once when the key is first sent: key_id. Never updated: each sender inserts or locks its keys'' rows in key order (INSERT ... ON CONFLICT DO UPDATE ... WHERE false, a FOR UPDATE row lock that makes no row version) until it commits, which orders key_seq by commit; the counter is bucketq.key_counter.';

insert into bucketq.migration (version, name) values (28, 'key_lock_order');
