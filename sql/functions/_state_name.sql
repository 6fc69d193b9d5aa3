create or replace function bucketq._state_name(state smallint) returns text
language sql immutable as $$
  select case state when 0 then 'ready' when 1 then 'leased' when 2 then 'delayed'
                    when 3 then 'waiting' when 4 then 'dead' end
$$;
