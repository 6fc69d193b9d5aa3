-- The hot paths' lookup of their group (claim, claim_locked, ack, record_attempt), one
-- statement inlined into theirs: a group that grant_group does not restrict, which any
-- caller that reaches the function may consume. No row (an unknown group, or one with
-- access rows) sends the caller to _group, which checks the caller's access and says
-- what is wrong: coalesce((select x from _group_unrestricted(name) x), _group(name)). (_group and _may_consume, two PL/pgSQL calls, were a tenth of a
-- wake-up's claim.)
create or replace function bucketq._group_unrestricted(group_name text) returns setof bucketq.consumer_group
language sql stable as $$
  select c.* from bucketq.consumer_group c
   where c.name = group_name
     and not exists (select 1 from bucketq.group_access a where a.group_id = c.group_id)
$$;

comment on function bucketq._group_unrestricted(text) is
'The group of this name when no grant_group restricts it (no row otherwise): the hot paths'' lookup before bucketq._group.';
