-- The next messages of one bucket's window for a group (visible in p_hi, not in p_lo,
-- ord above p_pos_ord), in ord order, which keeps each key in key_seq order (see
-- message.ord), each with what a claim does with it:
--   'h' hand it out now;
--   'w' wait in the inbox behind an earlier message of its key: one there (a retry, a
--       delay, a dead letter that blocks), or one this batch hands out or delays (past
--       max_per_key, or its not_before is ahead); the ack of that one promotes it;
--   'd' delay in the inbox until its not_before (a key's first message here);
--   's' skip: sent before the group's start time;
--   'x' not passed now: the batch ends before it.
-- A key with an earlier message in the inbox waits behind it. That row is locked (FOR
-- KEY SHARE, as a foreign key check does) so that an ack or dead letter deleting it
-- waits for us and its promotion, a later statement, sees the waiting row we insert. If
-- someone else holds that row right now, we cannot tell how it ends: the batch ends
-- before the key's first message here.
-- _log_claim reads a chunk plainly first and calls this only when some message of it
-- may not go now (or the group has keyed rows in the inbox).
create or replace function bucketq._log_chunk(
  g bucketq.consumer_group, p_bucket int, p_lo pg_snapshot, p_lo_floor bigint, p_hi pg_snapshot, p_hi_ceil bigint,
  p_early bigint[], p_pos_ord bigint, p_limit int, p_max_per_key int, p_now timestamptz)
returns table (n bigint, id bigint, ord bigint, key text, key_id bigint, key_seq bigint, sent_at timestamptz,
               payload jsonb, headers jsonb, decision "char")
-- plpgsql, so that its plan is cached (a SQL function is planned on every call before
-- Postgres 18). The decisions join a few dozen rows; the planner's estimate of one row
-- made nested loops that ran window functions once per row.
language plpgsql
set enable_nestloop = off
as $$
#variable_conflict use_column
begin
  return query
  with chunk as materialized (
    select row_number() over (order by w.ord) as n, w.id, w.ord, w.key, w.key_id, w.key_seq, w.sent_at,
           coalesce(w.not_before > p_now, false) as later, w.payload, w.headers,
           g.start_time is not null and w.sent_at < g.start_time as skip
      from (select w.* from bucketq._log_window(g.topic_id, p_bucket, p_lo, p_lo_floor, p_hi, p_hi_ceil, p_early, p_pos_ord, p_limit, g.log_from) w
             order by w.ord limit p_limit) w
  ),
  keyed as (
    select x.*, min(x.k) filter (where x.stops) over (partition by x.key_id) as stop_k
      from (select c.n, c.key_id, c.later, row_number() over (partition by c.key_id order by c.n) as k,
                   c.later or row_number() over (partition by c.key_id order by c.n) > p_max_per_key as stops
              from chunk c where c.key_id is not null and not c.skip) x
  ),
  blocked as (
    select b.key_id, b.first_seq, b.first_n,
           (select 1 from bucketq.inbox x
             where x.group_id = g.group_id and x.key_id = b.key_id and x.key_seq < b.first_seq
             order by x.key_seq desc limit 1
               for key share skip locked) is not null as held,
           exists (select 1 from bucketq.inbox x
                    where x.group_id = g.group_id and x.key_id = b.key_id and x.key_seq < b.first_seq) as present
      from (select c.key_id, min(c.key_seq) as first_seq, min(c.n) as first_n
              from chunk c where c.key_id is not null and not c.skip group by c.key_id) b
     -- Usually the group has no keyed row in the inbox at all (nothing failed, nothing
     -- waits): one probe, in this statement's snapshot, saves the two per key above
     -- (about a third of a chunk of 30 keys), and finds what they would find.
     where exists (select 1 from bucketq.inbox y where y.group_id = g.group_id and y.key_id is not null)
  ),
  decided as (
    select k.n, k.k, k.stop_k, coalesce(b.present, false) as waits,
           -- behind a row someone else holds: the batch ends before the key
           coalesce(b.present and not b.held and k.n = b.first_n, false) as cuts
      from keyed k left join blocked b on b.key_id = k.key_id
  ),
  cut as (
    select coalesce(min(d.n), 9223372036854775807) as n from decided d where d.cuts
  )
  select c.n, c.id, c.ord, c.key, c.key_id, c.key_seq, c.sent_at, c.payload, c.headers,
         (case
            when c.n >= (select x.n from cut x) then 'x'
            when c.skip then 's'
            when c.key_id is null then case when c.later then 'd' else 'h' end
            when d.waits then 'w'
            when d.stop_k is null or d.k < d.stop_k then 'h'
            when d.k = 1 then 'd'
            else 'w'
          end)::"char"
    from chunk c
    left join decided d on d.n = c.n
   order by c.n;
end $$;
