-- bucketq 000021: a placeholder on branch `trust`. Version 21 belongs to the
-- append-only log branch's migration; migration versions must be contiguous, so this
-- file holds the number until the branches merge. At the merge, delete this file and
-- keep that branch's 000021 (000022 does not depend on it).

insert into bucketq.migration (version, name) values (21, 'reserved');
