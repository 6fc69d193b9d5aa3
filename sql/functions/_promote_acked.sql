-- After an ack removed the given keys' active rows: promote each key's next row if it
-- waits, and return the keys' heads that are still leased below a later message acked
-- here (out of order). Two statements: the first locks each key's lowest row
-- (FOR NO KEY UPDATE, waiting for whoever is changing it: a leave or a rebalance handing
-- the rest of the run back); the second decides, with a snapshot that includes what
-- they committed. Deciding in the statement that waited would read the row as it was
-- before the wait (still leased): nothing promoted, the key stranded (issue 13, item 0).
create or replace function bucketq._promote_acked(p_group_id int, p_key_ids bigint[], p_max_seqs bigint[], p_now timestamptz)
returns bigint[]
language plpgsql as $$
declare
  v_skipped bigint[];
begin
  perform 1 from unnest(p_key_ids) as k(key_id)
    cross join lateral (select x.msg_id from bucketq.inbox x
                         where x.group_id = p_group_id and x.key_id = k.key_id
                         order by x.key_seq limit 1
                           for no key update) h;
  with heads as materialized (
    select k.key_id, k.max_seq, h.msg_id, h.state, h.key_seq
      from unnest(p_key_ids, p_max_seqs) as k(key_id, max_seq)
      cross join lateral (select x.msg_id, x.state, x.key_seq from bucketq.inbox x
                           where x.group_id = p_group_id and x.key_id = k.key_id
                           order by x.key_seq limit 1
                             for no key update) h
  ),
  promoted as (
    update bucketq.inbox i
       set state = case when i.available_at > p_now then 2 else 0 end
      from heads h
     where i.group_id = p_group_id and i.msg_id = h.msg_id and h.state = 3 and i.state = 3
       and not bucketq._log_holds_earlier(p_group_id, i.bucket, i.key_id, i.key_seq)
    returning 1
  )
  select array_agg(h.msg_id order by h.msg_id) into v_skipped from heads h where h.state = 1 and h.key_seq < h.max_seq;
  return v_skipped;
end $$;
