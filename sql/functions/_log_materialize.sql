-- Put log messages that a bucket's position passes without settling into the inbox,
-- where the exception machinery (retries, runs, dead letters) takes them on:
-- p_leased: as leased rows under p_token until p_until (a lease's messages left by an
-- ack, or an expired batch: available_at in the past); otherwise as ready rows, or
-- waiting behind an earlier row of their key (a locked batch's messages left by its
-- ack). Messages whose not_before is ahead are delayed instead. p_counted: messages
-- whose attempts count, once for each time listed; the rest have 0. p_wait: they all wait (state 3)
-- behind an earlier inbox row of their key, whatever their not_before, which _promote
-- turns into a delay when their turn comes.
create or replace function bucketq._log_materialize(
  g bucketq.consumer_group, p_ids bigint[], p_counted bigint[], p_leased boolean,
  p_token bigint, p_until timestamptz, p_consumer text, p_epoch bigint, p_now timestamptz,
  p_wait boolean default false)
returns void
language plpgsql as $$
begin
  insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at,
                             attempts, lease_token, consumer_id, epoch)
  select g.group_id, m.id, m.bucket,
         case when p_wait then 3
              when coalesce(m.not_before > p_now, false) then 2
              when p_leased then 1
              when m.key_id is not null and (
                     row_number() over (partition by m.key_id order by m.key_seq) > 1
                     or exists (select 1 from bucketq.inbox y
                                 where y.group_id = g.group_id and y.key_id = m.key_id and y.key_seq < m.key_seq))
                then 3
              else 0 end,
         m.key_id, m.key_seq, m.sent_at,
         case when coalesce(m.not_before > p_now, false) then m.not_before when p_leased then p_until end,
         (select count(*) from unnest(p_counted) u(id) where u.id = m.id)::int,
         case when p_leased and not coalesce(m.not_before > p_now, false) then p_token end,
         case when p_leased and not coalesce(m.not_before > p_now, false) then p_consumer end,
         case when p_leased and not coalesce(m.not_before > p_now, false) then p_epoch end
    from bucketq.message m
   where m.topic_id = g.topic_id and m.id = any(p_ids)
  on conflict (group_id, msg_id) do nothing;
end $$;
