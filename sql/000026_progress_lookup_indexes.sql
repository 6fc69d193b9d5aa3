-- bucketq 000026: the ack's lookup of its batches by transaction or lease token no
-- longer depends on the planner's guess.
--
-- progress_xact and progress_lease led with group_id, like the primary key. A generic
-- plan made while progress was nearly empty (a worker's first ack after the group was
-- created) priced both indexes alike and could take the primary key: every ack then
-- read all of the group's progress rows (4,000 at the end of a 30-second benchmark,
-- 3 ms per ack, growing until autovacuum's ANALYZE made the plan again). Transaction ids
-- and lease tokens are unique to one claim, so the indexes lead with them now, and the
-- lookups compare group_id in a form no index matches (see functions/_log_settle.sql).

drop index bucketq.progress_xact;
drop index bucketq.progress_lease;
create index progress_xact on bucketq.progress (xact) where xact is not null;
create index progress_lease on bucketq.progress (lease_token) where lease_token is not null;

insert into bucketq.migration (version, name) values (26, 'progress_lookup_indexes');
