-- bucketq 000038: a progress row keeps its id arrays uncompressed. A batch's 'hand',
-- 'attempt' and 'done' rows list its message ids (250 ids: 2 KB), just past the size at
-- which Postgres compresses a row's fields (pglz). Compressing took 0.2 ms a row and
-- reading it back 15 µs (a claim reads the bucket's latest row whole), against 0.04 ms
-- for the whole INSERT without it. Rows up to a page now stay as they are; longer ones
-- (batches of about 1,000 ids and more) go out of line uncompressed. Both settings
-- change no stored row; rows written before keep their compressed arrays until they are
-- pruned.
alter table bucketq.progress set (toast_tuple_target = 8160);
alter table bucketq.progress alter column msg_ids set storage external,
                             alter column early_ids set storage external;

insert into bucketq.migration (version, name) values (38, 'progress_ids_uncompressed');
