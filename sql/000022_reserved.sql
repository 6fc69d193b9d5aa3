-- bucketq 000022: a placeholder on branch `cron`. Version 22 belongs to another
-- branch's migration; migration versions must be contiguous, so this file holds the
-- number until the branches merge. At the merge, delete this file and keep that
-- branch's 000022 (000023 does not depend on it).

insert into bucketq.migration (version, name) values (22, 'reserved');
