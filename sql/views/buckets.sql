create or replace view bucketq.buckets as
select g.name as group_name,
       b.bucket,
       b.owner,
       b.epoch,
       (select min(i.msg_id) - 1 from bucketq.inbox i
         where i.group_id = b.group_id and i.bucket = b.bucket) as checkpoint,
       bucketq._now() - b.heartbeat_at as heartbeat_age,
       b.owner is not null and bucketq._now() - b.heartbeat_at <= g.session_timeout as owned,
       b.moved_at
  from bucketq.bucket_owner b
  join bucketq.consumer_group g on g.group_id = b.group_id;

comment on view bucketq.buckets is
'Bucket ownership per group: owner, epoch (bumped on every move), checkpoint (every message of the bucket with an id up to it is done; NULL when the bucket has nothing pending), heartbeat age, whether the ownership is live, and when it last moved.';
