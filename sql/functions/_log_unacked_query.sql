-- The text of a query for everything a group has not acked in its buckets' logs, past
-- the positions p_pos (from _log_positions, passed to the query as $1): _log_ahead for
-- all buckets at once, the batch under way included, messages sent before the
-- group's start (p_start) aside. Its rows are (bucket, id, sent_at, key_id, key_seq,
-- not_before, in_flight, xid), in_flight for a message handed out in a batch still
-- running.
-- The views' counts (_log_backlog_total, _log_backlog_buckets) run it inside their own
-- aggregates; skip_to_latest, rewind and delete_group read the backlog through it.
--
-- The bulk, what committed after each window's snapshot, is one scan of the log for
-- every bucket. Read bucket by bucket (_log_ahead) it was a pass over the heap per
-- bucket, since every page holds messages of every bucket: bucketq.lag on a
-- 10.7-million-message backlog over 16 buckets took 33 s, and groups' pending 27. The
-- bounds are literals in the text so that the plan fits the backlog (an index range for
-- a few messages, a sequential scan for millions); as parameters, the plan was made for
-- a third of the log, a sequential scan even with nothing pending. The rest of each
-- window, the transactions in progress at its snapshot and the batch under way
-- (_log_ahead_bounded) are read bucket by bucket. (Only the batch's ids can be in
-- flight: the window's rest is past the batch's position.)
create or replace function bucketq._log_unacked_query(p_topic_id int, p_pos bucketq.progress[], p_buckets int, p_start timestamptz)
returns text
language plpgsql stable as $$
declare
  v_buckets int[];
  v_xmaxes xid8[];
  v_xmax_min xid8;
begin
  -- xmax of each bucket's window snapshot, by bucket number (NULL: no position).
  select array_agg(c.bucket), min(pg_snapshot_xmax(c.hi)),
         array(select (select pg_snapshot_xmax(x.hi) from unnest(p_pos) x where x.bucket = b.bucket)
                 from generate_series(0, p_buckets - 1) as b(bucket) order by b.bucket)
    into v_buckets, v_xmax_min, v_xmaxes
    from unnest(p_pos) c;
  return format(
    $q$select a.bucket, a.id, a.sent_at, a.key_id, a.key_seq, a.not_before,
              c.kind = 2 and a.id = any(c.msg_ids)
              and case when c.lease_token is not null then c.leased_until > bucketq._now()
                       else pg_xact_status(c.xact) = 'in progress' end as in_flight,
              a.xid
         from unnest($1::bucketq.progress[]) c
        cross join lateral bucketq._log_ahead_bounded(%1$s, c) a
        where a.sent_at >= %2$L::timestamptz
       union all
       select m.bucket, m.id, m.sent_at, m.key_id, m.key_seq, m.not_before, false, m.xid
         from bucketq.message m
        where m.topic_id = %1$s and m.bucket = any(%3$L::int[])
          and m.xid >= %4$L::xid8 and m.xid >= (%5$L::xid8[])[m.bucket + 1]
          and m.sent_at >= %2$L::timestamptz$q$,
    p_topic_id, coalesce(p_start, '-infinity'), v_buckets, v_xmax_min, v_xmaxes);
end $$;

comment on function bucketq._log_unacked_query(int, bucketq.progress[], int, timestamptz) is
'Internal: the SQL text of a query (with p_pos as $1) for every message of a group''s buckets'' logs past its positions p_pos, the batches under way included, messages sent before p_start aside: rows (bucket, id, sent_at, key_id, key_seq, not_before, in_flight, xid). For the views'' backlog counts, skip_to_latest, rewind and delete_group.';
