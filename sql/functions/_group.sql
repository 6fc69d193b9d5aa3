-- Every consumer-side function finds its group through _group(), so the check lives
-- there. The caller is bucketq._caller() (its SET ROLE role, else its login): inside
-- these SECURITY DEFINER functions current_user is the owner.
create or replace function bucketq._group(group_name text) returns bucketq.consumer_group
language plpgsql stable as $$
declare
  g bucketq.consumer_group;
begin
  select * into g from bucketq.consumer_group where name = group_name;
  if not found then
    raise exception 'unknown consumer group: %', bucketq._quote_input(group_name)
      using errcode = 'BQ003',
            hint = 'Create it first with bucketq.create_group(group_name => ..., topic => ...); list groups with: select name, topic from bucketq.groups;';
  end if;
  if not bucketq._may_consume(g.group_id) then
    raise exception 'permission denied for consumer group %: role % is not among its consumers', g.name, bucketq._caller()
      using errcode = '42501',
            hint = format('An admin grants it with: select bucketq.grant_group(%L, %L);', g.name, bucketq._caller());
  end if;
  return g;
end $$;
