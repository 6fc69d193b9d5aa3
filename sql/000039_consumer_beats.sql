-- bucketq 000039: heartbeats are appended, not written over the consumer's row.
--
-- Until now each heartbeat updated its bucketq.consumer row (heartbeat_at). Under a
-- pinned xmin horizon (an idle transaction, a replica's hot_standby_feedback, a logical
-- slot) no version of that row can be removed, and every claim (the claimer's liveness)
-- and every settle of a lease (the caller joined the batch's consumer) read the row by
-- its key, walking all of them: on the development cluster, 4 pages and 0.11 ms a lookup
-- at first, 75 pages and 0.49 ms after 5,000 heartbeats (4.6 hours at one every 3.3 s),
-- growing for as long as the pin lasts.
--
-- Now a heartbeat inserts a row into bucketq.consumer_beat, in the part of the current
-- five minutes (consumer_beat_0 or _1: _beat_part(now)), and only locks the consumer's
-- row (which sets its xmax in place, no new version). A consumer's heartbeat is the
-- newest of its consumer row's heartbeat_at (set by join, and by maintain() for a
-- consumer it rotates away from) and its newest beat in either part: an index probe
-- each, newest first, whatever the horizon (view bucketq._consumer_now).
--
-- maintain() empties the part of the previous five minutes by TRUNCATE once the current
-- five minutes are half gone (_rotate_consumer_beats): consumers that beat since then are
-- unaffected; the newest beat of any other is copied to its row first. Nothing is
-- deleted row by row, and a consumer's row gets a new version only when it went quiet.

create table bucketq.consumer_beat (
  part        smallint not null,
  group_id    int not null,
  consumer_id text not null,
  beat_at     timestamptz not null
) partition by list (part);
-- Insert-only and emptied by TRUNCATE (as key_counter_0 and _1, migration 31).
create table bucketq.consumer_beat_0 partition of bucketq.consumer_beat for values in (0) with (autovacuum_enabled = false);
create table bucketq.consumer_beat_1 partition of bucketq.consumer_beat for values in (1) with (autovacuum_enabled = false);
create index consumer_beat_latest on bucketq.consumer_beat (group_id, consumer_id, beat_at);

comment on table bucketq.consumer_beat is
'Heartbeats, appended (bucketq.heartbeat): one row per beat in the part of its five minutes (consumer_beat_0 or _1, bucketq._beat_part(beat_at)). A consumer''s heartbeat is the newest of its bucketq.consumer.heartbeat_at and its newest row here (view bucketq._consumer_now). maintain() copies the newest beat of consumers that went quiet to their row and TRUNCATEs the part of the five minutes before; no row is updated or deleted one by one. No foreign key: rows of a consumer that left or a deleted group go with their part.';
comment on table bucketq.consumer_beat_0 is
'Part 0 of bucketq.consumer_beat: the heartbeats of even five-minute periods (since the epoch). Emptied by maintain() (TRUNCATE) in the second half of the next period.';
comment on table bucketq.consumer_beat_1 is
'Part 1 of bucketq.consumer_beat: as consumer_beat_0, for odd five-minute periods.';
comment on column bucketq.consumer.heartbeat_at is
'When the consumer joined, or its newest heartbeat when maintain() last emptied the part of bucketq.consumer_beat that held it; its heartbeat now is the newest of this and its rows in consumer_beat (view bucketq._consumer_now).';

insert into bucketq.migration (version, name) values (39, 'consumer_beats');
