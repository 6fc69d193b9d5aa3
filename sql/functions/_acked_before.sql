-- The ids of p_ids that group g has acked already: in a batch's 'done' row (the log
-- path's delivery record) and, with p_records, in bucketq.delivery (the inbox path's).
-- ack and _log_settle call it before they record an ack, so that a message handed out
-- a second time after its ack (a bug in the cursor's recount, say) makes the ack fail
-- with BQ006 instead of committing its effects twice. rewind removes the ids it
-- delivers again from both records first, so replays pass.
--
-- Cost: one probe of the GIN index progress_delivered per id (about 2.5 us; migration
-- 29 took its pending list away, which every search read whole), and with
-- p_records one probe of delivery's primary key per partition. "group_id + 0": the
-- primary key (group_id first) must not be chosen, it would read every batch the
-- group ever had; with sequential scans off, the GIN index is the only way left.
create or replace function bucketq._acked_before(g bucketq.consumer_group, p_ids bigint[], p_records boolean)
returns bigint[]
language plpgsql stable
set enable_seqscan = off
as $$
declare
  v_twice bigint[];
begin
  if coalesce(cardinality(p_ids), 0) = 0 then
    return null;
  end if;
  if exists (select 1 from bucketq.progress p
              where p.kind = 1 and p.msg_ids && p_ids and p.group_id + 0 = g.group_id) then
    select array_agg(distinct u.id order by u.id) into v_twice
      from bucketq.progress p cross join unnest(p.msg_ids) as u(id)
     where p.kind = 1 and p.msg_ids && p_ids and p.group_id + 0 = g.group_id and u.id = any(p_ids);
  end if;
  if p_records then
    select array_agg(distinct x.id order by x.id) into v_twice
      from (select unnest(v_twice) as id
            union all
            select d.msg_id from bucketq.delivery d
             where d.group_id = g.group_id and d.msg_id = any(p_ids) and d.topic_id = g.topic_id) x;
  end if;
  return v_twice;
end $$;

comment on function bucketq._acked_before(bucketq.consumer_group, bigint[], boolean) is
'For ack: the ids of p_ids that group g has acked before, in a batch''s done row (progress kind 1) or, with p_records, a delivery record; NULL if none. A duplicate-delivery guard: ack raises BQ006 for them.';
