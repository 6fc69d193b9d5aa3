-- bucketq 000036: bucketq.groups' caught_up asks each part of a bucket's unacked log on
-- its own (functions/_log_backlog_any.sql). _log_unacked, the union it asked before, has
-- no other caller.
drop function if exists bucketq._log_unacked(int, int, int, timestamptz);

insert into bucketq.migration (version, name) values (36, 'backlog_any_parts');
