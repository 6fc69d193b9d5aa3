-- Make the next message of each given key ready. Runs as its own statement after the
-- caller removed the key's active row, so its snapshot includes every producer that
-- committed while we waited on their lock. One index probe per key: the key's lowest
-- row is promoted if it is waiting, unless the bucket's batch out from the log holds
-- an earlier message of its key (_log_holds_earlier). p_check_active (replay, rewind): a waiting row may
-- sit below an active one; then nothing is promoted until that one is done.
-- PL/pgSQL for its plan cache (see _log_open).
create or replace function bucketq._promote(p_group_id int, p_key_ids bigint[], p_now timestamptz, p_check_active boolean default false)
returns void
language plpgsql as $$
begin
  -- The heads are found first, key by key (an init plan), then updated by their ids. As
  -- a join of the inbox with the heads, a plan made while the inbox looked empty took
  -- the inbox's waiting rows as the outer side and looked for every key's head again
  -- under each of them: replay_dead of 2,350 dead letters over 1,175 keys ran 94 s here.
  update bucketq.inbox i
     set state = case when i.available_at > p_now then 2 else 0 end
   where i.group_id = p_group_id and i.state = 3
     and i.msg_id = any(array(
       select h.msg_id
         from unnest(p_key_ids) as k(key_id)
         cross join lateral (select x.msg_id, x.state, x.bucket, x.key_seq from bucketq.inbox x
                              where x.group_id = p_group_id and x.key_id = k.key_id
                              order by x.key_seq limit 1) h
        -- Checked per key's head, here: as a condition on the updated row, which
        -- names no other table, it was pushed down to the scan of the inbox and
        -- ran for every waiting row of the group (about 170 a call in a FIFO run
        -- with retries: 3.4 ms a nack, when no key was even given).
        where h.state = 3
          and not bucketq._log_holds_earlier(p_group_id, h.bucket, k.key_id, h.key_seq)
          and (not p_check_active
               or not exists (select 1 from bucketq.inbox y
                               where y.group_id = p_group_id and y.key_id = k.key_id and y.state <> 3))));
end $$;
