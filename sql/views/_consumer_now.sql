-- The consumers with their heartbeat now: the newest of the row's heartbeat_at (set by
-- join, and by maintain() when it empties a part that held the consumer's newest beat)
-- and its newest row in either part of bucketq.consumer_beat (migration 39). Each part
-- is one index probe, read newest first: inserted rows are never updated, so a pinned
-- xmin horizon adds nothing to step over. The columns are bucketq.consumer's, in its
-- order (_consumer_joined_by_caller returns them as that row type).
--
-- Private (no grants): the lobby's and the claims' functions read it as the owner. A
-- view, not a function, so that the parts are locked when the calling statement is
-- planned, before its snapshot is taken: maintain() copies a beat to the consumer's row
-- and empties its part in one transaction, and a READ COMMITTED statement sees either
-- both or neither.
create or replace view bucketq._consumer_now as
select c.group_id,
       c.consumer_id,
       c.joined_at,
       greatest(c.heartbeat_at,
                (select max(b.beat_at) from bucketq.consumer_beat_0 b
                  where b.group_id = c.group_id and b.consumer_id = c.consumer_id),
                (select max(b.beat_at) from bucketq.consumer_beat_1 b
                  where b.group_id = c.group_id and b.consumer_id = c.consumer_id)) as heartbeat_at,
       c.meta,
       c.joined_by
  from bucketq.consumer c;

comment on view bucketq._consumer_now is
'Internal: bucketq.consumer with heartbeat_at its heartbeat now (the newest of the row''s and its rows in bucketq.consumer_beat). What the lobby, the claims and the views read for liveness.';
