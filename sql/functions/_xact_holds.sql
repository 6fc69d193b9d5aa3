-- Does transaction x hold a row whose xmax is p_xmax (a row lock, or the row's
-- delete)? xmax is x's 32-bit id when x is the only locker, else a MultiXactId whose
-- members include it. A plain xid read as a MultiXactId raises (it was not created) or,
-- rarely, names an unrelated multixact: such a row counts as not held.
create or replace function bucketq._xact_holds(x xid8, p_xmax xid) returns boolean
language plpgsql volatile as $$
declare
  v_xid xid := (x::text::numeric % 4294967296)::bigint::text::xid;
begin
  if p_xmax = v_xid then
    return true;
  end if;
  if p_xmax::text = '0' then
    return false;
  end if;
  begin
    return exists (select 1 from pg_get_multixact_members(p_xmax) m where m.xid = v_xid);
  exception when others then
    return false;
  end;
end $$;

comment on function bucketq._xact_holds(xid8, xid) is
'True when transaction x holds the row whose xmax is given (its only locker, or a member of its MultiXactId).';
