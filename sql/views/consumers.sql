create or replace view bucketq.consumers as
select g.name as group_name,
       c.consumer_id,
       bucketq._now() - c.heartbeat_at <= g.session_timeout as alive,
       bucketq._now() - c.heartbeat_at as heartbeat_age,
       (select count(*) from bucketq.bucket_owner o
         where o.group_id = c.group_id and o.owner = c.consumer_id) as owned_buckets,
       (select count(*) from bucketq.inbox i
         where i.group_id = c.group_id and i.state = 1 and i.consumer_id = c.consumer_id)
       -- and the batches it holds from its buckets' logs (each bucket's latest progress row)
       + coalesce((select sum(cardinality(p.msg_ids)) from bucketq.bucket_owner o
                   cross join lateral (select x.kind, x.msg_ids, x.consumer_id, x.leased_until from bucketq.progress x
                                        where x.group_id = o.group_id and x.bucket = o.bucket and x.kind in (1, 2)
                                        order by x.seq desc limit 1) p
                   where o.group_id = c.group_id and o.owner = c.consumer_id and p.kind = 2
                     and p.consumer_id = c.consumer_id and p.leased_until > bucketq._now()), 0) as leased,
       c.joined_at,
       c.meta
  from bucketq._consumer_now c
  join bucketq.consumer_group g on g.group_id = c.group_id;

comment on view bucketq.consumers is
'Consumers in each group''s lobby: alive (heartbeat within the group''s session_timeout), heartbeat age, buckets owned, messages leased now, when it joined, and its meta (host, pid, ...).';
