-- bucketq 000007: views for psql.

create function bucketq._state_name(state smallint) returns text
language sql immutable as $$
  select case state when 0 then 'ready' when 1 then 'leased' when 2 then 'delayed'
                    when 3 then 'waiting' when 4 then 'dead' end
$$;

create view bucketq.topics as
select t.name,
       t.buckets,
       t.retention,
       t.max_payload_bytes,
       t.partition_interval,
       (select count(*) from bucketq.consumer_group g where g.topic_id = t.topic_id) as groups,
       (select count(*) from bucketq.log_partition p where p.topic_id = t.topic_id) as partitions,
       (select min(p.lower_bound) from bucketq.log_partition p where p.topic_id = t.topic_id) as oldest_partition,
       (select coalesce(sum(pg_total_relation_size(format('bucketq.%I', p.message_rel)::regclass)), 0)
          from bucketq.log_partition p where p.topic_id = t.topic_id) as log_bytes,
       t.created_at
  from bucketq.topic t;
comment on view bucketq.topics is
'One row per topic: bucket count, retention, payload limit, partition interval, number of groups and log partitions, oldest partition and log size on disk.';

create view bucketq.groups as
select g.name as group_name,
       t.name as topic,
       g.start_at,
       g.max_attempts,
       g.on_exhausted,
       g.backoff_base,
       g.backoff_max,
       g.lease_timeout,
       g.session_timeout,
       (select count(*) from bucketq.inbox i where i.group_id = g.group_id) as pending,
       (select count(*) from bucketq.inbox i where i.group_id = g.group_id and i.state = 1) as leased,
       (select count(*) from bucketq.dead_letter d where d.group_id = g.group_id and d.replayed_at is null) as dead,
       g.created_at
  from bucketq.consumer_group g
  join bucketq.topic t on t.topic_id = g.topic_id;
comment on view bucketq.groups is
'One row per consumer group: its topic and settings, messages pending (not yet acked or dead-lettered), leased now, and dead letters not replayed.';

create view bucketq.lag as
select g.name as group_name,
       t.name as topic,
       b.bucket,
       count(i.msg_id) filter (where i.state = 0) as ready,
       count(i.msg_id) filter (where i.state = 1) as leased,
       count(i.msg_id) filter (where i.state = 2) as delayed,
       count(i.msg_id) filter (where i.state = 3) as waiting,
       count(i.msg_id) filter (where i.state = 4) as dead_blocking,
       count(i.msg_id) filter (where i.state = 1 and i.available_at <= bucketq._now()) as expired_leases,
       bucketq._now() - min(i.sent_at) as oldest_age
  from bucketq.consumer_group g
  join bucketq.topic t on t.topic_id = g.topic_id
  cross join lateral generate_series(0, t.buckets - 1) as b(bucket)
  left join bucketq.inbox i on i.group_id = g.group_id and i.bucket = b.bucket
 group by g.name, t.name, b.bucket;
comment on view bucketq.lag is
'Per group and bucket: messages ready to claim, leased (in flight), delayed (retry backoff or not_before), waiting behind an earlier message of their key, dead and blocking their key (on_exhausted = block), leases already expired, and the age of the oldest unfinished message.';

create view bucketq.dead_letters as
select g.name as group_name,
       t.name as topic,
       d.msg_id,
       m.key,
       d.key_seq,
       d.bucket,
       d.attempts,
       d.last_error,
       d.dead_at,
       d.sent_at,
       case when d.replayed_at is not null then 'replayed'
            when g.on_exhausted = 'block' then 'blocking'
            else 'skipped' end as status,
       d.replayed_at,
       m.payload,
       m.headers
  from bucketq.dead_letter d
  join bucketq.consumer_group g on g.group_id = d.group_id
  join bucketq.topic t on t.topic_id = d.topic_id
  left join bucketq.message m on m.topic_id = d.topic_id and m.sent_at = d.sent_at and m.id = d.msg_id;
comment on view bucketq.dead_letters is
'Messages that failed max_attempts times, per group: key, attempts, last error, when, payload, and status: skipped (the key moved on), blocking (the key waits for replay_dead) or replayed.';

create view bucketq.consumers as
select g.name as group_name,
       c.consumer_id,
       bucketq._now() - c.heartbeat_at <= g.session_timeout as alive,
       bucketq._now() - c.heartbeat_at as heartbeat_age,
       (select count(*) from bucketq.bucket_owner o
         where o.group_id = c.group_id and o.owner = c.consumer_id) as owned_buckets,
       (select count(*) from bucketq.inbox i
         where i.group_id = c.group_id and i.state = 1 and i.consumer_id = c.consumer_id) as leased,
       c.joined_at,
       c.meta
  from bucketq.consumer c
  join bucketq.consumer_group g on g.group_id = c.group_id;
comment on view bucketq.consumers is
'Consumers in each group''s lobby: alive (heartbeat within the group''s session_timeout), heartbeat age, buckets owned, messages leased now, when it joined, and its meta (host, pid, ...).';

create view bucketq.buckets as
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

insert into bucketq.migration (version, name) values (7, 'views');
