create or replace function bucketq.delete_dead(group_name text, msg_ids bigint[] default null) returns int
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_blocking bigint[];
  v_missing bigint[];
  v_count int;
begin
  g := bucketq._group(group_name);
  if msg_ids is not null then
    select array_agg(u.id) into v_missing from unnest(msg_ids) u(id)
     where not exists (select 1 from bucketq.dead_letter d where d.group_id = g.group_id and d.msg_id = u.id);
    if v_missing is not null then
      raise exception 'delete_dead: messages % are not dead letters of group %', bucketq._id_list(v_missing), g.name
        using errcode = 'BQ005', hint = 'List them from bucketq.dead_letters.';
    end if;
  end if;
  -- A dead letter that holds its key (on_exhausted = block, not replayed) stays: deleting
  -- its record would leave the key blocked with nothing to show why.
  select array_agg(d.msg_id order by d.msg_id) into v_blocking from bucketq.dead_letter d
   where d.group_id = g.group_id and d.replayed_at is null and g.on_exhausted = 'block'
     and (msg_ids is null or d.msg_id = any(msg_ids));
  if v_blocking is not null and msg_ids is not null then
    raise exception 'delete_dead: messages % of group % hold their key (on_exhausted = block)', v_blocking, g.name
      using errcode = 'BQ005', hint = 'Replay them with replay_dead; once replayed, their records can be deleted.';
  end if;
  delete from bucketq.dead_letter d
   where d.group_id = g.group_id
     and (msg_ids is null or d.msg_id = any(msg_ids))
     and not (d.replayed_at is null and g.on_exhausted = 'block');
  get diagnostics v_count = row_count;
  return v_count;
end $$;

comment on function bucketq.delete_dead(text, bigint[]) is
'Delete dead-letter records of a group: all of them (msg_ids NULL) or the given ones (BQ005 if one is not a dead letter of the group). Records that hold their key (on_exhausted = block, not yet replayed) are kept: with msg_ids NULL they are left out, named explicitly they raise BQ005; replay those instead. The messages stay in the log until retention. Returns how many records were deleted.';
