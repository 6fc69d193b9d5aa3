-- bucketq 000008: operations. rewind a group to a point in time; views for the
-- questions asked at 3 a.m. (throughput, vacuum horizon, sizes).

-- Throughput comes from the delivery records; a BRIN index on acked_at (which grows
-- with insertion order) keeps "the last minutes" cheap at almost no write cost.
create index delivery_acked_at on bucketq.delivery using brin (acked_at);

create function bucketq.rewind(group_name text, to_time timestamptz) returns int
language plpgsql as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_oldest timestamptz;
  v_count int;
  v_keys bigint[];
begin
  g := bucketq._group(group_name);
  select * into t from bucketq.topic where topic_id = g.topic_id;
  if to_time is null then
    raise exception 'rewind: to_time must not be NULL (group %)', g.name
      using errcode = 'BQ005', hint = 'Pass the time to replay from, e.g. now() - interval ''1 hour''.';
  end if;
  select min(p.lower_bound) into v_oldest from bucketq.log_partition p where p.topic_id = t.topic_id;
  if to_time < v_oldest then
    raise exception 'rewind: % is before the oldest retained message time % of topic %', to_time, v_oldest, t.name
      using errcode = 'BQ005', hint = format('Messages older than the retention (%s) are gone; rewind to %s or later.', t.retention, v_oldest);
  end if;

  -- Hold producers back (as create_group does), void every lease of the group (epochs
  -- bump, so an ack under an old lease fails), and wait for acks already under way.
  perform pg_advisory_xact_lock(bucketq._lock_ns(), t.topic_id);
  update bucketq.bucket_owner o set epoch = o.epoch + 1, moved_at = bucketq._now() where o.group_id = g.group_id;
  perform 1 from bucketq.inbox i where i.group_id = g.group_id order by i.key_id, i.msg_id for update;

  -- Forget the group's progress from to_time on, then put those messages back in key order.
  delete from bucketq.delivery d where d.group_id = g.group_id and d.topic_id = t.topic_id and d.sent_at >= to_time;
  update bucketq.dead_letter d set replayed_at = bucketq._now()
   where d.group_id = g.group_id and d.sent_at >= to_time and d.replayed_at is null;
  delete from bucketq.inbox i where i.group_id = g.group_id and i.sent_at >= to_time;
  insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at)
  select g.group_id, m.id, m.bucket,
         case when m.key_id is not null then 3 when m.not_before > bucketq._now() then 2 else 0 end,
         m.key_id, m.key_seq, m.sent_at, m.not_before
    from bucketq.message m
   where m.topic_id = t.topic_id and m.sent_at >= to_time;
  get diagnostics v_count = row_count;

  -- Leases of older messages still in flight are void too: hand them out again.
  update bucketq.inbox i set state = 0, lease_token = null, available_at = null, consumer_id = null, epoch = null,
         attempts = greatest(i.attempts - 1, 0)
   where i.group_id = g.group_id and i.state = 1;
  select array_agg(distinct i.key_id) into v_keys from bucketq.inbox i
   where i.group_id = g.group_id and i.sent_at >= to_time and i.key_id is not null;
  if v_keys is not null then
    perform bucketq._promote(g.group_id, v_keys, bucketq._now(), true);
  end if;
  perform pg_notify('bucketq', t.name);
  return v_count;
end $$;

comment on function bucketq.rewind(text, timestamptz) is
'Replay a group from a point in time within retention: every message sent at or after to_time is delivered to the group again, in per-key order, as if it had never been processed (its delivery records from then on are removed, dead letters from then on marked replayed). In-flight leases of the group become void (epochs bump). Producers of the topic wait while it runs. Returns how many messages will be delivered again. Other groups are not affected.';

create view bucketq.throughput as
select g.name as group_name,
       t.name as topic,
       date_trunc('minute', d.acked_at) as minute,
       count(*) as acked,
       round(count(*) / 60.0, 1) as acked_per_second
  from bucketq.delivery d
  join bucketq.consumer_group g on g.group_id = d.group_id
  join bucketq.topic t on t.topic_id = d.topic_id
 where d.acked_at >= date_trunc('minute', bucketq._now()) - interval '15 minutes'
 group by g.name, t.name, date_trunc('minute', d.acked_at);
comment on view bucketq.throughput is
'Messages acked per group and minute over the last 15 minutes (the current minute is partial), from the delivery records.';

create view bucketq.vacuum_horizon as
select 'session' as kind,
       a.pid::text as holder,
       a.usename::text as role,
       a.datname::text as database,
       a.state,
       age(a.backend_xmin) as xmin_age,
       now() - a.xact_start as transaction_age,
       left(a.query, 200) as query
  from pg_stat_activity a
 where a.backend_xmin is not null
union all
select 'replication slot', s.slot_name::text, null, s.database::text, case when s.active then 'active' else 'inactive' end,
       greatest(age(s.xmin), age(s.catalog_xmin)), null, null
  from pg_replication_slots s
 where s.xmin is not null or s.catalog_xmin is not null
union all
select 'prepared transaction', p.gid, p.owner::text, p.database::text, 'prepared', age(p.transaction), now() - p.prepared, null
  from pg_prepared_xacts p;
comment on view bucketq.vacuum_horizon is
'What holds back vacuum (the xmin horizon), oldest first when ordered by xmin_age desc: sessions with an open snapshot, replication slots, prepared transactions. A long transaction anywhere keeps dead queue rows from being cleaned.';

create view bucketq.table_sizes as
select c.relname as relation,
       case c.relkind when 'p' then 'partitioned table' when 'r' then 'table' when 'i' then 'index' else c.relkind::text end as kind,
       coalesce(parent.relname, '') as partition_of,
       case when c.relkind = 'p'
            then (select coalesce(sum(pg_total_relation_size(pt.relid)), 0) from pg_partition_tree(c.oid) pt where pt.isleaf)
            else pg_total_relation_size(c.oid) end as total_bytes,
       pg_size_pretty(case when c.relkind = 'p'
            then (select coalesce(sum(pg_total_relation_size(pt.relid)), 0) from pg_partition_tree(c.oid) pt where pt.isleaf)
            else pg_total_relation_size(c.oid) end) as total,
       s.n_live_tup as live_rows,
       s.n_dead_tup as dead_rows,
       s.last_autovacuum
  from pg_class c
  left join pg_inherits i on i.inhrelid = c.oid
  left join pg_class parent on parent.oid = i.inhparent
  left join pg_stat_user_tables s on s.relid = c.oid
 where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('r', 'p');
comment on view bucketq.table_sizes is
'Every bucketq table and partition: size on disk with indexes and TOAST (partitioned tables: the sum of their partitions), live and dead rows, last autovacuum.';

insert into bucketq.migration (version, name) values (8, 'ops');
