-- Whether the bucket's batch out from the log holds an earlier message of this key.
-- A claim that hands a key's message out from the log and leaves the key's next ones
-- waiting in the inbox (past max_per_key) puts nothing of the handed-out one in the
-- inbox: the waiting rows look like the key's first. Promotions see the inbox only, so
-- without this check an ack of a replayed earlier message (or its dead letter) promoted
-- them while the one before them was still in flight (found by the random-sessions
-- test: k2:64 and 65 acked before k2:63). A bucket has one batch out at a time: its
-- latest progress row, attempt notes aside, when that is a hand row (kind 2). One probe
-- of progress; the log is read only when such a batch exists (rare: promotions of a
-- waiting row run on the exceptional paths, and the normal ack has written its done row
-- before it promotes).
-- PL/pgSQL for its plan cache (see _log_open).
create or replace function bucketq._log_holds_earlier(p_group_id int, p_bucket int, p_key_id bigint, p_key_seq bigint)
returns boolean
language plpgsql stable as $$
begin
  return exists (
    select 1
      from (select p.kind, p.msg_ids from bucketq.progress p
             where p.group_id = p_group_id and p.bucket = p_bucket and p.kind <> 3
             order by p.seq desc limit 1) lp
      join bucketq.consumer_group g on g.group_id = p_group_id
     where lp.kind = 2
       and exists (select 1 from bucketq.message m
                    where m.topic_id = g.topic_id and m.id = any(lp.msg_ids)
                      and m.key_id = p_key_id and m.key_seq < p_key_seq));
end $$;

comment on function bucketq._log_holds_earlier(int, int, bigint, bigint) is
'Internal: true when the batch the bucket has out from the log (its latest progress row, a hand row) holds a message of this key before key_seq. _promote and _promote_acked leave a waiting row alone then: its turn comes with that batch''s ack, nack or expiry.';
