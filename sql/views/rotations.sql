-- The TRUNCATE rotations maintain() runs, one row each (migration 40): which part takes
-- rows now, whether the retired part still holds rows, and since when a rotation is due
-- (NULL while nothing is):
--   key_counter:   sends append to one part; the other (retired) got its last row before
--                  the rotation that turned sends away from it, so while it holds rows it
--                  is due since that rotation;
--   consumer_beat: a beat can go once the period after its own is half gone
--                  (_rotate_consumer_beats), so the rotation is due from then for the
--                  oldest beat in either part (a part left full by a rotation given up
--                  on is appended to again five minutes later).
-- maintain() runs about every minute (workers call it), so a rotation due for minutes
-- was given up on (kept_runs: a reader held the part past the 500 ms lock timeout) or
-- nobody runs maintain().
create or replace view bucketq.rotations as
with parts as (
  select 'key_counter'::text as rotation,
         'key_counter_' || (max(x.key_rotation) % 2) as appending_to,
         'key_counter_' || ((max(x.key_rotation) + 1) % 2) as retired,
         case (max(x.key_rotation) + 1) % 2
           when 0 then exists (select 1 from bucketq.key_counter_0)
           else exists (select 1 from bucketq.key_counter_1) end as retired_rows,
         null::timestamptz as beat_due
    from bucketq.topic x
  union all
  -- (the part is bucketq._beat_part(now), written out: the view's readers, monitors and
  -- admins, may call only the functions granted to them)
  select 'consumer_beat',
         'consumer_beat_' || n.part,
         'consumer_beat_' || (1 - n.part),
         case n.part
           when 1 then exists (select 1 from bucketq.consumer_beat_0)
           else exists (select 1 from bucketq.consumer_beat_1) end,
         -- the start of the oldest beat's period, then one and a half periods
         (select to_timestamp(floor(extract(epoch from min(b.beat_at)) / 300) * 300 + 450) from bucketq.consumer_beat b)
    from (select floor(extract(epoch from bucketq._now()) / 300)::bigint % 2 as part) n
),
due as (
  select p.*, r.rotated_at, r.kept_runs, r.kept_since, r.last_detail,
         case when p.rotation = 'key_counter' then case when p.retired_rows then r.rotated_at end
              when p.beat_due <= bucketq._now() then p.beat_due end as due_since
    from parts p
    left join bucketq.rotation r on r.name = p.rotation
   where p.appending_to is not null
),
late as (
  select d.*, x.due_for, coalesce(x.due_for > interval '5 minutes', false) as overdue
    from due d cross join lateral (select greatest(bucketq._now() - d.due_since, interval '0') as due_for) x
)
select d.rotation,
       d.appending_to,
       d.retired,
       d.retired_rows,
       pg_total_relation_size(('bucketq.' || d.appending_to)::regclass)
         + pg_total_relation_size(('bucketq.' || d.retired)::regclass) as bytes,
       d.rotated_at,
       d.kept_runs,
       d.kept_since,
       d.due_since,
       d.due_for,
       d.overdue,
       case when not d.overdue then d.last_detail
            when coalesce(d.kept_runs, 0) = 0
            then format('bucketq.%s rows have waited %s to be emptied, and maintain() has not tried since: check that a worker (they call it every minute) or a cron job runs select bucketq.maintain()',
                        d.rotation, date_trunc('second', d.due_for))
            else format('bucketq.%s rows have waited %s to be emptied: maintain() gave up on the lock in its last %s run(s), since %s. Find who holds the parts with select l.pid, l.relation::regclass, l.mode, a.state, a.xact_start from pg_locks l join pg_stat_activity a using (pid) where l.relation in (''bucketq.%s_0''::regclass, ''bucketq.%s_1''::regclass) (a pg_dump, a long report, a session idle in transaction) and end it%s',
                        d.rotation, date_trunc('second', d.due_for), d.kept_runs, d.kept_since, d.rotation, d.rotation,
                        case when d.rotation = 'key_counter'
                             then '; or a producer''s transaction left open: a send holds its topic''s producer lock until it commits (bucketq.vacuum_horizon lists open transactions)'
                             else '' end)
       end as detail
  from late d;

comment on view bucketq.rotations is
'The TRUNCATE rotations maintain() runs, one row each: key_counter (per-key counters, bucketq.key_counter_0/_1) and consumer_beat (heartbeats, bucketq.consumer_beat_0/_1). appending_to: the part taking rows now; retired: the part to empty next, retired_rows whether it holds any; bytes: both parts with indexes; rotated_at: when a part was last emptied; kept_runs and kept_since: maintain() runs in a row since then that gave up on the lock (a reader held the part past 500 ms); due_since: since when a rotation is due (key_counter: its retired part holds rows; consumer_beat: the oldest beat could have gone; NULL while nothing is due), due_for how long; overdue: due for more than 5 minutes (the parts grow, and every send or liveness lookup reads deeper indexes); detail: what to do when overdue, else the last run''s detail. No row for key_counter while no topic exists.';
