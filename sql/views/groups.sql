create or replace view bucketq.groups as
select g.name as group_name,
       t.name as topic,
       g.start_at,
       g.max_attempts,
       g.on_exhausted,
       g.backoff_base,
       g.backoff_max,
       g.lease_timeout,
       g.session_timeout,
       (select count(*) from bucketq.inbox i where i.group_id = g.group_id)
         -- (the buckets by number, not by bucket_owner: reading the lobby's table would
         -- wait for whoever locks it, and a worker reads this view before it joins)
         + bucketq._log_backlog_total(g.group_id, g.topic_id, t.buckets, g.start_time) as pending,
       (select count(*) from bucketq.inbox i where i.group_id = g.group_id and i.state = 1)
         + (select coalesce(sum(cardinality(p.msg_ids)), 0) from generate_series(0, t.buckets - 1) as o(bucket)
              cross join lateral (select x.kind, x.msg_ids from bucketq.progress x
                                   where x.group_id = g.group_id and x.bucket = o.bucket and x.kind in (1, 2)
                                   order by x.seq desc limit 1) p
             where p.kind = 2)::bigint as leased,
       (select count(*) from bucketq.dead_letter d where d.group_id = g.group_id and d.replayed_at is null) as dead,
       g.created_at,
       -- pending = 0, found without counting: a poller waiting for the group to catch up
       -- selects this column alone (the view's other counts are then not computed).
       not exists (select 1 from bucketq.inbox i where i.group_id = g.group_id)
         and not exists (select 1 from generate_series(0, t.buckets - 1) as o(bucket)
                          where bucketq._log_backlog_any(g.group_id, g.topic_id, o.bucket, g.start_time)) as caught_up
  from bucketq.consumer_group g
  join bucketq.topic t on t.topic_id = g.topic_id
 where bucketq._may_see_group(g.group_id);

comment on view bucketq.groups is
'One row per consumer group: its topic and settings, messages pending (not yet acked or dead-lettered), leased now, and dead letters not replayed; caught_up: pending is 0, answered without counting (cheap to poll). A consumer sees the groups it may consume (grant_group); monitors and admins see all.';
