-- For _log_busy, only for a window that has early messages (rare): whether one of them
-- (p_early_ids) lies past the position. A function of its own so that the probe's plan
-- (an id lookup and a sort) is set up only when it runs: as a subplan of _log_busy it
-- was set up on every claim, called or not.
-- PL/pgSQL for its plan cache (see _log_open).
create or replace function bucketq._log_early_ahead(p_topic_id int, p_early_ids bigint[], p_pos_ord bigint, p_log_from timestamptz)
returns boolean
language plpgsql stable as $$
begin
  return exists (select 1 from (select m.ord from bucketq.message m
                                 where m.topic_id = p_topic_id and m.id = any(p_early_ids)
                                   and m.ord > p_pos_ord and m.sent_at >= p_log_from
                                 order by m.ord limit 1) e);
end $$;

comment on function bucketq._log_early_ahead(int, bigint[], bigint, timestamptz) is
'Internal (claims): whether one of a window''s early messages lies past the position p_pos_ord.';
