-- bucketq 000040: what the rotations did last, for operators.
--
-- maintain() empties the per-key counters' retired part (migration 31) and the
-- heartbeats of the five minutes before (migration 39) by TRUNCATE, waiting at most
-- 500 ms for its lock. A reader that holds the part longer (pg_dump, a long report, a
-- session idle in a transaction that once read it) makes each run give up, and the run
-- said so only in maintain()'s result, which workers log at debug level. Meanwhile the
-- parts grow: every send probes a deeper key_counter index, every liveness lookup a
-- longer consumer_beat one. Now each rotation, done or given up, updates its row here,
-- and the view bucketq.rotations shows how long ago each was last done and how many runs
-- in a row gave up (bucketq.metrics(): bucketq_rotation_age_seconds and friends).
--
-- One row per rotation, updated once per maintain() run at most (a minute): not on any
-- hot path.

create table bucketq.rotation (
  name        text primary key check (name in ('key_counter', 'consumer_beat')),
  rotated_at  timestamptz not null,
  kept_runs   int not null default 0,
  kept_since  timestamptz,
  last_detail text not null default ''
);

-- (Counted from the upgrade: nothing recorded the rotations before.)
insert into bucketq.rotation (name, rotated_at, last_detail)
values ('key_counter', now(), 'recorded since migration 40'),
       ('consumer_beat', now(), 'recorded since migration 40');

comment on table bucketq.rotation is
'The last outcome of each TRUNCATE rotation maintain() runs: key_counter (bucketq.key_counter''s parts) and consumer_beat (bucketq.consumer_beat''s). rotated_at: when the part was last emptied (or the upgrade that added this table); kept_runs and kept_since: runs in a row that gave up on the part''s lock since then, and when the first of them ran; last_detail: the last run''s detail text. Read through the view bucketq.rotations.';

insert into bucketq.migration (version, name) values (40, 'rotation_record');
