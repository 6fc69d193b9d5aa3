create or replace view bucketq.buckets as
select g.name as group_name,
       b.bucket,
       b.owner,
       b.epoch,
       c.pos_id as checkpoint,
       bucketq._now() - oc.heartbeat_at as heartbeat_age,
       -- live while its owner's heartbeat is; a paused group's (owner '') stay held
       coalesce(b.owner = '' or bucketq._now() - oc.heartbeat_at <= g.session_timeout, false) as owned,
       b.moved_at,
       c.pos_ord as checkpoint_ord,
       c.lo as window_lo,
       c.hi as window_hi,
       c.created_at as checkpoint_at,
       (select count(*) from bucketq.inbox i where i.group_id = b.group_id and i.bucket = b.bucket) as exceptions
  from bucketq.bucket_owner b
  join bucketq.consumer_group g on g.group_id = b.group_id
  left join bucketq._consumer_now oc on oc.group_id = b.group_id and oc.consumer_id = b.owner
  left join lateral (select p.* from bucketq.progress p
                      where p.group_id = b.group_id and p.bucket = b.bucket and p.kind = 1
                      order by p.seq desc limit 1) c on true;

comment on view bucketq.buckets is
'Bucket ownership per group: owner, epoch (bumped on every move), heartbeat age (its owner''s; NULL when paused or unowned), whether the ownership is live (its owner''s heartbeat within the session timeout; a paused group''s buckets count as held), when it last moved, and the stored checkpoint: the group has finished (or put in the inbox) every message of the bucket''s log window (window_lo, window_hi] read in ord order up to checkpoint_ord, message id checkpoint being the last one passed; checkpoint_at is when it last moved. exceptions: the bucket''s messages in the inbox (retries, waiting, delayed, dead and blocking).';
