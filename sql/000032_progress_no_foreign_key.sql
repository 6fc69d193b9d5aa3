-- bucketq.progress without its foreign key to consumer_group. Every claim, ack and
-- record_attempt inserts progress rows, and the key's check ran a query per statement
-- that locked the group's row FOR KEY SHARE: one shared row locked by every worker's
-- every transaction, a MultiXact as soon as two of them overlap, and about 20 us a
-- claim or ack. What the key guarded is kept otherwise:
--   * delete_group deletes the group's progress itself, after it holds the group's
--     cursor rows (a claim or an ack writes progress only while it holds them, so every
--     row they write has committed by then);
--   * record_attempt, which writes without the cursor rows (from a second connection),
--     locks the group's row FOR KEY SHARE itself, so a group being deleted makes it
--     wait and then fail;
--   * group ids come from an identity and are never used again.
alter table bucketq.progress drop constraint progress_group_id_fkey;

insert into bucketq.migration (version, name) values (32, 'progress_no_foreign_key');
