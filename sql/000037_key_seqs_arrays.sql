-- bucketq 000037: _take_key_seqs returns its key_ids and bases as two arrays (OUT
-- parameters) instead of a set of rows, so that send_batch's body takes them in a plain
-- expression (functions/_take_key_seqs.sql). Its arguments are the same, its return
-- type is not: CREATE OR REPLACE cannot change that, so the old one goes first.
drop function if exists bucketq._take_key_seqs(int, text[], bigint[]);

insert into bucketq.migration (version, name) values (37, 'key_seqs_arrays');
