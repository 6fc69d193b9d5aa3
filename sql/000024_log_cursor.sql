-- bucketq 000024: consume from the log through stored checkpoints.
--
-- Until now every message put one row per group into bucketq.inbox, which was then
-- updated (leased) and deleted (acked): about 1,150 rows updated or deleted per 1,000
-- messages, and a queue that slowed down between autovacuum visits and under a pinned
-- xmin horizon. From here on a group reads each bucket of the log directly, from a
-- position stored per (group, bucket):
--
--   * Positions follow commit order through transaction snapshots, as PgQ does. Each
--     message records the transaction that sent it (xid); a window is the set of the
--     bucket's messages visible in one snapshot (hi) and not in an earlier one (lo), so
--     a producer that commits late is never passed over. Inside a window messages are
--     taken in ord order: ord comes from a sequence after the send has locked its keys'
--     counters, so a key's message has a higher ord than the key's previous one, whose
--     commit its sender waited for (and which is therefore in the same window or an
--     earlier one). Reading a window in ord order keeps every key in key_seq order.
--   * bucketq.progress is append-only: a claim adds a 'hand' row (what it handed out,
--     with the lease), the ack adds a 'done' row that is both the new checkpoint and
--     the delivery record of the batch. The latest row per (group, bucket) is the
--     state; lookups read the newest index entry first, so old versions never slow
--     them down, and nothing is updated or deleted per message.
--   * bucketq.inbox keeps only the exceptions: retries in backoff, messages waiting
--     behind a failed or blocked one of their key, not_before in the future, dead
--     letters of 'block' groups, messages of batches that did not end cleanly, and
--     rewinds. Its state machine is unchanged.
--   * bucketq.cursor has one row per (group, bucket), never updated: claims lock it
--     (FOR UPDATE SKIP LOCKED) so one batch at a time reads a bucket's log.

alter table bucketq.message add column xid xid8, add column ord bigint;
comment on column bucketq.message.xid is 'The sending transaction (pg_current_xact_id()): windows of the log are cut by transaction snapshots. NULL for messages sent before migration 24 (they were fanned out to the inbox).';
comment on column bucketq.message.ord is 'Order inside a log window, from bucketq.message_ord_seq, taken after the send locked its keys'' counters: a key''s message always has a higher ord than the key''s previous one (whose commit its sender waited for), so reading a window in ord order keeps every key in key_seq order.';
create sequence bucketq.message_ord_seq as bigint;
comment on sequence bucketq.message_ord_seq is 'message.ord. Cache 1: a snapshot''s windows are bounded by this sequence''s value read before and after the snapshot is taken.';
-- Every leaf partition of the log gets them, now and when _create_partitions adds one:
-- windows are read in ord order; the transactions in progress at a window's edge are
-- found by xid.
create index message_window on bucketq.message (bucket, ord);
create index message_xid on bucketq.message (bucket, xid);

create table bucketq.cursor (
  group_id int not null references bucketq.consumer_group on delete cascade,
  bucket   int not null,
  primary key (group_id, bucket)
);
comment on table bucketq.cursor is 'One row per (group, bucket), never updated: a claim locks it (FOR UPDATE SKIP LOCKED) while it reads the bucket''s log and, for a locked claim, until its transaction ends.';

create table bucketq.progress (
  group_id     int not null references bucketq.consumer_group on delete cascade,
  bucket       int not null,
  seq          bigint generated always as identity,
  kind         smallint not null check (kind in (1, 2, 3)),   -- 1 done, 2 hand, 3 attempt
  lo           pg_snapshot not null,
  lo_floor     bigint not null,
  hi           pg_snapshot not null,
  hi_floor     bigint not null,
  hi_ceil      bigint not null,
  early_ids    bigint[] not null default '{}',
  pos_ord      bigint not null,
  pos_id       bigint not null,
  msg_ids      bigint[] not null default '{}',
  lease_token  bigint,
  leased_until timestamptz,
  xact         xid8,
  consumer_id  text,
  epoch        bigint,
  created_at   timestamptz not null,
  primary key (group_id, bucket, seq)
) with (autovacuum_vacuum_insert_scale_factor = 0.05);
create index progress_lease on bucketq.progress (group_id, lease_token) where lease_token is not null;
create index progress_xact on bucketq.progress (group_id, xact) where xact is not null;
create index progress_done on bucketq.progress (group_id, created_at) where kind = 1;
-- "did group G process message M": the delivery records inside 'done' rows.
create index progress_delivered on bucketq.progress using gin (msg_ids) where kind = 1;
comment on table bucketq.progress is
'Append-only log of each (group, bucket)''s progress through the message log; the row with the highest seq is the current state. kind 1 (done): every message of the window (lo, hi] (visible in snapshot hi, not in lo) up to ord pos_ord (message pos_id) is finished or in the inbox; lo_floor, hi_floor: message_ord_seq before each snapshot was taken, hi_ceil after (a message visible in hi has ord <= hi_ceil); early_ids: the window''s messages with ord <= lo_floor (from transactions in progress at lo, found once when the window opened, by _log_open); msg_ids are the messages acked by this row (the delivery record: consumer_id, epoch, created_at). kind 2 (hand): msg_ids were handed out up to that position, under lease_token until leased_until (claim) or in transaction xact (claim_locked). kind 3 (attempt): record_attempt''s note that transaction xact is handling msg_ids, so that a crash counts. maintain() prunes rows older than the topic''s retention, keeping the latest per bucket.';

-- Existing groups start reading the log here: everything sent so far is in their inbox
-- or done. Producers wait for this transaction (the topics'' advisory locks), so the
-- snapshot below separates what the inbox holds from what the log path will read.
do $$
declare
  r record;
begin
  for r in select topic_id from bucketq.topic order by topic_id loop
    perform pg_advisory_xact_lock(bucketq._lock_ns(), r.topic_id);
  end loop;
end $$;

insert into bucketq.cursor (group_id, bucket)
select o.group_id, o.bucket from bucketq.bucket_owner o;

insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, pos_ord, pos_id, created_at)
select o.group_id, o.bucket, 1, pg_current_snapshot(), 0, pg_current_snapshot(), 0, 0, 0, 0, now()
  from bucketq.bucket_owner o;   -- no message has an ord yet

-- The commit-time readiness check is no longer needed: sends write no inbox rows.
drop trigger commit_check_readiness on bucketq.commit_check;
drop table bucketq.commit_check;
drop function bucketq._tg_commit_check();

insert into bucketq.migration (version, name) values (24, 'log_cursor');
