-- bucketq 000035: the views count a group's backlog in one read of the log for all of
-- its buckets (functions/_log_unacked_rows.sql), not one read per bucket.
--
-- _log_backlog (bucketq.lag) and _log_backlog_count (bucketq.groups) counted one bucket
-- at a time. Each bucket's messages are spread over every page of the log, so each
-- bucket read the heap again: the lag of a 10.7-million-message backlog over 16 buckets
-- took 27 s. Their successors, _log_backlog_buckets and _log_backlog_total, take the
-- group's bucket count instead of a bucket. The two views that call them are dropped here
-- and made again with the definitions, which run after the migrations.
drop view if exists bucketq.lag;
drop view if exists bucketq.groups;
drop function if exists bucketq._log_backlog(int, int, int, timestamptz);
drop function if exists bucketq._log_backlog_count(int, int, int, timestamptz);

insert into bucketq.migration (version, name) values (35, 'backlog_one_pass');
