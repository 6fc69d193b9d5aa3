create or replace function bucketq._check_name(kind text, name text) returns void
language plpgsql immutable as $$
begin
  if name is null or name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' then
    raise exception 'invalid % name: %', kind, bucketq._quote_input(name)
      using errcode = 'BQ001',
            hint = format('A %s name is 1 to 100 characters: letters, digits, ".", "_" or "-", starting with a letter or digit.', kind);
  end if;
end $$;
