-- One row per message and group of its topic. Where the row comes from, in order:
-- the inbox (the message is unfinished for the group), the delivery record (done), the
-- dead letter (dead and skipped), else the group was not subscribed when it was sent.
create or replace view bucketq.message_states as
select t.name as topic,
       g.name as group_name,
       m.id as msg_id,
       m.key,
       m.key_seq,
       m.bucket,
       m.sent_at,
       case
         when i.state = 0 and lk.consumer_id is not null then 'locked'
         -- (spelled out rather than bucketq._state_name: a view's functions are checked
         -- against its reader, and the monitor role may not call internal functions)
         when i.state = 0 then 'ready'
         when i.state = 1 then 'leased'
         when i.state = 2 then 'delayed'
         when i.state = 3 then 'waiting'
         when i.state = 4 then 'dead'
         when d.msg_id is not null or pd.created_at is not null then 'done'
         when dl.msg_id is not null then 'dead'
         when ph.kind = 2 and ph.lease_token is not null then 'leased'
         when ph.kind = 2 then 'locked'
         when m.xid is not null and (g.start_time is null or m.sent_at >= g.start_time) then
           case when pw.id is not null then 'waiting'
                when m.not_before > bucketq._now() then 'delayed'
                else 'ready' end
         else 'not subscribed'
       end as state,
       case
         when i.state = 1 then i.consumer_id
         when i.state = 0 then lk.consumer_id
         when i.state is null then coalesce(d.consumer_id, pd.consumer_id, case when ph.kind = 2 then ph.consumer_id end)
       end as consumer_id,
       case when i.state = 1 then i.epoch
            when i.state is null then coalesce(d.epoch, pd.epoch, case when ph.kind = 2 then ph.epoch end) end as epoch,
       case
         when i.state = 0 then lk.started_at
         when i.state is null and d.msg_id is not null then d.acked_at
         when i.state is null and pd.created_at is not null then pd.created_at
         when i.state is null and ph.kind = 2 and dl.msg_id is null then ph.created_at
         when i.state is null or i.state = 4 then dl.dead_at
       end as since,
       case when i.state in (1, 2, 3) then i.available_at
            when i.state is null and d.msg_id is null and pd.created_at is null and ph.kind = 2 then ph.leased_until
            when i.state is null and d.msg_id is null and pd.created_at is null and dl.msg_id is null and m.not_before > bucketq._now()
              then m.not_before end as until,
       case
         when i.state = 3 then (select h.msg_id from bucketq.inbox h
                                 where h.group_id = i.group_id and h.key_id = i.key_id and h.key_seq < i.key_seq
                                 order by h.key_seq limit 1)
         when i.state is null then pw.id
       end as waiting_behind,
       coalesce(i.attempts, d.attempt, case when pd.created_at is not null then 1 end, dl.attempts,
                case when ph.kind = 2 then 1 end, case when m.xid is not null then 0 end) as attempts,
       case
         when i.msg_id is not null then coalesce(i.last_error, case when i.state = 4 then dl.last_error end)
         when d.msg_id is null then dl.last_error
       end as last_error,
       dl.replayed_at,
       -- (a filter on it reads one topic's log partitions; one on topic reads every topic's)
       m.topic_id
  from bucketq.message m
  join bucketq.topic t on t.topic_id = m.topic_id
  join bucketq.consumer_group g on g.topic_id = m.topic_id
  left join bucketq.inbox i on i.group_id = g.group_id and i.msg_id = m.id
  left join bucketq.delivery d on i.msg_id is null and d.group_id = g.group_id and d.topic_id = m.topic_id
                              and d.sent_at = m.sent_at and d.msg_id = m.id
  left join bucketq.dead_letter dl on dl.group_id = g.group_id and dl.msg_id = m.id
  -- The log path: acked with its batch (the 'done' row that records it, the latest if a
  -- rewind delivered it again), or handed out in the batch under way (its bucket's latest
  -- row, a 'hand'). ORDER BY seq: the rows are found by the GIN index on msg_ids, then
  -- sorted. With LIMIT 1 alone the planner, which cannot tell how many rows hold an id,
  -- read the group's done rows in turn hoping for an early match: every one of them for a
  -- message not acked (0.16 s of 0.31 at 75,000 done rows).
  left join lateral (
    select p.consumer_id, p.epoch, p.created_at from bucketq.progress p
     where i.msg_id is null and d.msg_id is null and p.group_id = g.group_id and p.kind = 1
       and p.msg_ids @> array[m.id]
     order by p.seq desc
     limit 1
  ) pd on true
  left join lateral (
    select x.* from (select p.kind, p.msg_ids, p.lease_token, p.leased_until, p.consumer_id, p.epoch, p.created_at
                       from bucketq.progress p
                      where i.msg_id is null and d.msg_id is null and pd.created_at is null
                        and p.group_id = g.group_id and p.bucket = m.bucket and p.kind in (1, 2)
                      order by p.seq desc limit 1) x
     where x.kind = 2 and m.id = any(x.msg_ids)
  ) ph on true
  -- Still ahead in the log: waiting when the key's previous message is unfinished (in
  -- the inbox, or neither acked nor dead-lettered).
  left join lateral (
    select p.id from bucketq.message p
     where m.key_id is not null and i.msg_id is null and d.msg_id is null and pd.created_at is null
       and ph.kind is null and dl.msg_id is null and m.ord is not null
       and p.topic_id = m.topic_id and p.bucket = m.bucket and p.ord < m.ord
       and p.key_id = m.key_id and p.key_seq = m.key_seq - 1
       and (exists (select 1 from bucketq.inbox x where x.group_id = g.group_id and x.msg_id = p.id)
            or (not exists (select 1 from bucketq.delivery y where y.group_id = g.group_id and y.topic_id = p.topic_id and y.msg_id = p.id)
                -- (ordered, as pd above: by the GIN index, not a read of every done row)
                and not exists (select 1 from (select y.seq from bucketq.progress y
                                                where y.group_id = g.group_id and y.kind = 1 and y.msg_ids @> array[p.id]
                                                order by y.seq limit 1) y)
                and not exists (select 1 from bucketq.dead_letter y where y.group_id = g.group_id and y.msg_id = p.id)))
     order by p.ord desc limit 1
  ) pw on true
  left join lateral (
    select a.consumer_id, a.started_at from bucketq.attempt_log a
     where i.state = 0 and i.lease_token is null and a.group_id = g.group_id and m.id = any(a.msg_ids)
       and pg_xact_status(a.xact) = 'in progress'
     limit 1
  ) lk on true;
comment on view bucketq.message_states is
'Where each message stands in each group of its topic: state (ready; leased: in flight under a lease until `until`; locked: in flight in a claim_locked transaction since `since`; delayed: retry backoff or not_before until `until`; waiting: behind the unfinished message `waiting_behind` of its key; dead: dead-lettered, holding its key under on_exhausted = block while still in line, skipped otherwise; done: acked by consumer_id at `since`; not subscribed: sent before the group''s start), with the consumer, epoch, attempts, last error and replay time. Filter by msg_id, or by topic_id and key: where topic_id = (select topic_id from bucketq.topics where name = ''orders'') and key = ''k1'' reads that topic''s log alone, where a filter on topic reads every topic''s.';
