-- bucketq 000025: per-key counters without dead tuples.
--
-- Until now every keyed send updated its key's bucketq.topic_key row (last_seq =
-- last_seq + n): one dead row version per keyed send. Under a pinned xmin horizon (a
-- long REPEATABLE READ transaction anywhere) none of them could be pruned; in a
-- 3-minute benchmark the 1,000 rows of topic_key gathered 762,000 dead versions and
-- sends slowed to 0.55x. From here on:
--
--   * topic_key rows are written once, when a key first appears, and never updated.
--     A sender locks its keys' rows FOR NO KEY UPDATE until it commits (a row lock sets
--     xmax, it makes no new version): the next sender of a key still waits for the
--     previous one's commit, so key_seq still follows commit order per key.
--   * bucketq.key_counter is append-only: one row per key per send, the range of
--     key_seqs it took. The newest row of a key holds its last key_seq; maintain()
--     deletes the older ones, off the send path.
--
-- See functions/_take_key_seqs.sql.

create table bucketq.key_counter (
  key_id    bigint not null,
  first_seq bigint not null,
  last_seq  bigint not null,
  primary key (key_id, first_seq),
  check (last_seq >= first_seq)
);
comment on table bucketq.key_counter is
'Append-only per-key counter: one row per key per send, the key_seqs first_seq..last_seq it took (a key''s rows are contiguous). The row with the highest first_seq holds the key''s last key_seq; a sender reads it while holding the key''s topic_key row lock, and appends the next range. The primary key makes a sender whose REPEATABLE READ snapshot missed a newer row fail (40001) rather than reuse a key_seq. maintain() deletes all but the newest row of each key. No foreign key (checked on every send): delete_topic deletes a topic''s rows.';

-- The current counters, as one range from 1 each: a transaction whose snapshot predates
-- this migration sees no row for the key and would start at 1, which then collides.
insert into bucketq.key_counter (key_id, first_seq, last_seq)
select k.key_id, 1, k.last_seq from bucketq.topic_key k where k.last_seq > 0;

alter table bucketq.topic_key drop column last_seq;
-- Rows are no longer updated: no room to keep free for HOT updates (migration 12).
alter table bucketq.topic_key reset (fillfactor);
comment on table bucketq.topic_key is
'One row per (topic, key), written once when the key is first sent: key_id. Never updated: each sender locks its keys'' rows (FOR NO KEY UPDATE) until it commits, which orders key_seq by commit; the counter is bucketq.key_counter.';

insert into bucketq.migration (version, name) values (25, 'key_counter');
