-- bucketq 000031: the per-key counter rotates (PgQ's way) instead of deleting row by row.
--
-- Since migration 25 each keyed send appended one bucketq.key_counter row per key, and
-- maintain() deleted the superseded ones every minute. Under a pinned xmin horizon none
-- of those deletions could be vacuumed: in a 10-minute soak with a REPEATABLE READ
-- transaction held open, key_counter gathered 7.2 million dead rows (386 MB, its index
-- 305 MB), autovacuum reread it every minute, and throughput ended at 0.88x its first
-- minute. Now key_counter is partitioned:
--
--   * key_counter_0 and key_counter_1 (part 0, 1): append-only key_seq ranges, one row
--     per key per send, as before. A topic's senders append to part
--     topic.key_rotation % 2.
--   * key_counter_base (part 2): one row per key, its key_seqs 1..last_seq as of the
--     last rotation.
--
-- maintain() rotates: with every topic appending to one part, it folds the other (the
-- retired one, which no sender appends to) into key_counter_base, TRUNCATEs it, and
-- points every topic at it. Nothing is deleted row by row; the base gets one row
-- version per key that was sent to since the rotation before, not one per send.
-- See functions/_take_key_seqs.sql and functions/maintain.sql.

alter table bucketq.key_counter rename to key_counter_v25;
alter table bucketq.key_counter_v25 rename constraint key_counter_pkey to key_counter_v25_pkey;

create table bucketq.key_counter (
  part      smallint not null,
  key_id    bigint not null,
  first_seq bigint not null,
  last_seq  bigint not null,
  check (last_seq >= first_seq)
) partition by list (part);
-- Insert-only and emptied by TRUNCATE: vacuum would find nothing to remove, and under a
-- pinned horizon it cannot even mark pages all-visible; it would only reread them.
-- (Wraparound vacuums still run; each TRUNCATE gives the part a fresh relfrozenxid.)
create table bucketq.key_counter_0 partition of bucketq.key_counter for values in (0) with (autovacuum_enabled = false);
create table bucketq.key_counter_1 partition of bucketq.key_counter for values in (1) with (autovacuum_enabled = false);
create table bucketq.key_counter_base partition of bucketq.key_counter for values in (2);
alter table bucketq.key_counter_0 add primary key (key_id, first_seq);
alter table bucketq.key_counter_1 add primary key (key_id, first_seq);
alter table bucketq.key_counter_base add primary key (key_id);
alter table bucketq.key_counter_base add check (first_seq = 1);

insert into bucketq.key_counter_base (part, key_id, first_seq, last_seq)
select 2, c.key_id, 1, max(c.last_seq) from bucketq.key_counter_v25 c group by c.key_id;
drop table bucketq.key_counter_v25;

alter table bucketq.topic add column key_rotation int not null default 0;
-- A new row version of every topic: a REPEATABLE READ sender whose snapshot predates
-- this migration (and so the counters' move) fails when it locks its topic row.
update bucketq.topic set key_rotation = 0;

comment on table bucketq.key_counter is
'Per-key counters, partitioned: a key''s last key_seq is the last_seq of its newest row (highest first_seq) in the part its topic appends to (key_counter_0 or key_counter_1, topic.key_rotation % 2), else in the other part, else its key_counter_base row, else 0. Senders append one row per key per send, holding the key''s topic_key row lock; maintain() rotates the parts (fold into the base, TRUNCATE) and never deletes a row one by one. No foreign key (checked on every send): delete_topic deletes a topic''s rows.';
comment on table bucketq.key_counter_0 is
'Part 0 of bucketq.key_counter: append-only key_seq ranges, one row per key per send of the topics whose key_rotation is even. The primary key makes a REPEATABLE READ sender whose snapshot missed a newer row of its key fail (40001) rather than reuse a key_seq. Emptied by maintain() (TRUNCATE) once no topic appends to it and its rows are folded into key_counter_base.';
comment on table bucketq.key_counter_1 is
'Part 1 of bucketq.key_counter: as key_counter_0, for the topics whose key_rotation is odd.';
comment on table bucketq.key_counter_base is
'Part 2 of bucketq.key_counter: one row per key, first_seq 1 and last_seq its last key_seq as of the last rotation that folded a part holding it (maintain()). Updated once per key per rotation, not per send.';
comment on column bucketq.topic.key_rotation is
'How many times maintain() has rotated this topic''s per-key counters; its senders append to bucketq.key_counter part key_rotation % 2. Changed only while holding the topic''s producers back.';

insert into bucketq.migration (version, name) values (31, 'key_counter_rotation');
