-- bucketq 000027: a floor under each topic's log, so that claims stop reading the
-- partitions every group has passed.
--
-- A statement over the log by bucket and position cannot be pruned by the partition key
-- (sent_at): in a generic plan it sets up a scan of every partition, and the default
-- retention keeps a week of daily partitions. Measured (bench e2e-aged): end-to-end on a
-- topic a week old ran at 0.84x a new one's rate.
--
-- log_from: no message with an older sent_at is ahead of any group's checkpoint, nor
-- will one be sent: maintain() moves it up to the end of the oldest partitions that
-- every group has passed, after waiting for the topic's producers in flight; a send
-- whose transaction started before it takes it as its sent_at. The claim path compares
-- sent_at with the copy on consumer_group (a parameter, so that the executor prunes the
-- partitions below it before it opens them); that copy never runs ahead of the topic's.
alter table bucketq.topic add column log_from timestamptz not null default '-infinity';
alter table bucketq.consumer_group add column log_from timestamptz not null default '-infinity';

comment on column bucketq.topic.log_from is
'The log''s floor: every message with an older sent_at has been passed by every group''s checkpoint, and no message is sent with an older one (a send whose transaction began earlier takes log_from as its sent_at). Moved up by maintain() to the end of the oldest partitions every group has passed; claims do not read the partitions below it.';
comment on column bucketq.consumer_group.log_from is
'The topic''s log_from as of the last maintain() (never above it): the claim path reads the log from there on.';

insert into bucketq.migration (version, name) values (27, 'log_floor');
