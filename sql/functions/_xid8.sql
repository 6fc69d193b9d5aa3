-- The full transaction id (xid8) of a recent 32-bit xid such as a row's xmin: the
-- epoch of the current transaction id, or the one before when x is more than 2^31 above
-- it (the counter wrapped since x). A subtransaction's id is a little above its top
-- transaction's: the same epoch.
create or replace function bucketq._xid8(x xid) returns xid8
language sql volatile as $$
  select ((((c >> 32)
            - case when x::text::bigint - (c & 4294967295) > 2147483648 then 1 else 0 end) << 32) | x::text::bigint)::text::xid8
    from (select pg_current_xact_id()::text::bigint as c) s
$$;

comment on function bucketq._xid8(xid) is
'The xid8 of a recent xid (a row''s xmin): the epoch of the current transaction id, or the one before across a wraparound.';
