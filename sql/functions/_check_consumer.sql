-- The consumer_id a caller names must be its own: the role that joined it
-- (bucketq.consumer.joined_by), unless the caller is an admin or the schema owner
-- (operator tools acting on behalf). A consumer with no row here is left to the
-- caller (not a member: BQ008 where that matters); one that joined before 000022
-- (joined_by NULL) must join again.
create or replace function bucketq._check_consumer(fn text, g bucketq.consumer_group, p_consumer text) returns void
language plpgsql stable as $$
declare
  v_by name;
begin
  perform bucketq._check_consumer_id(fn, p_consumer);
  select c.joined_by into v_by from bucketq.consumer c where c.group_id = g.group_id and c.consumer_id = p_consumer;
  if not found or v_by = bucketq._caller() or bucketq._caller_is_admin() then
    return;
  end if;
  if v_by is null then
    raise exception '%: consumer % of group % joined before consumers were bound to their role; it must join again', fn, p_consumer, g.name
      using errcode = 'BQ008', hint = format('Call bucketq.join(%L, %L) again (workers do this on their own).', g.name, p_consumer);
  end if;
  raise exception '%: permission denied for consumer % of group %: another role joined it; role % may act only as consumers it joined',
    fn, p_consumer, g.name, bucketq._caller()
    using errcode = '42501',
          hint = 'Join with a consumer_id of your own (a fresh one per process start, e.g. hostname:pid:random) and use that one; admins (bucketq_admin) may act as any consumer.';
end $$;

comment on function bucketq._check_consumer(text, bucketq.consumer_group, text) is
'Refuses (42501) a caller acting as a consumer that another role joined (admins excepted); BQ008 for a consumer joined before 000022.';
