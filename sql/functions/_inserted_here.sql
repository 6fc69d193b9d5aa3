-- Was a row we can see inserted by this transaction (or one of its subtransactions)?
-- A visible row whose inserter is still in progress can only be our own. ack and nack
-- of a locked batch take such rows as held: the rest of a batch read from the log that
-- this transaction's own ack or nack put in the inbox, where the row lock it also takes
-- may belong to a subtransaction (a handler's savepoint) whose id is not the one
-- _xact_holds compares with.
create or replace function bucketq._inserted_here(p_xmin xid) returns boolean
language sql volatile as $$
  select pg_current_xact_id_if_assigned() is not null
     and pg_xact_status(bucketq._xid8(p_xmin)) = 'in progress'
$$;

comment on function bucketq._inserted_here(xid) is
'True for a visible row whose inserting transaction is still in progress: one inserted by the calling transaction or its subtransactions.';
