-- bucketq 000015: an ack's promotion waits for whoever is changing a key's next row.
-- Before, an ack read the key's lowest remaining row without a lock: if another
-- transaction was just handing that row's lease back (a rebalance voiding a run's
-- tail, or a claim putting an expired run's tail back behind its head), each saw the
-- other's row as it was before: the ack found a leased row (nothing to promote) and the
-- other saw the acked row still there (so the tail must wait), and the key's rows were
-- left waiting with nothing ahead of them. Now the lowest row is locked (FOR NO KEY
-- UPDATE, which producers' FOR KEY SHARE checks do not wait for): the promotion waits
-- for that transaction and sees the row as it committed, or holds the row so the other
-- one skips it (its SKIP LOCKED selection) and leaves it leased, to expire as a head.

create or replace function bucketq._promote_acked(p_group_id int, p_key_ids bigint[], p_max_seqs bigint[], p_now timestamptz)
returns bigint[]
language sql as $$
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
    returning 1
  )
  select array_agg(h.msg_id order by h.msg_id) from heads h where h.state = 1 and h.key_seq < h.max_seq
$$;

insert into bucketq.migration (version, name) values (15, 'promote_waits');
