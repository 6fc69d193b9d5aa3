-- What an error message may quote of a caller's input: at most 100 characters, quoted,
-- then the input's full size. An error must not echo a 10 MB argument back.
create or replace function bucketq._quote_input(v text) returns text
language sql immutable parallel safe as $$
  select case when v is null then 'NULL'
              when length(v) <= 100 then quote_literal(v)
              else quote_literal(left(v, 100)) || format('…(%s bytes)', octet_length(v)) end
$$;

comment on function bucketq._quote_input(text) is
'For error messages: the input quoted, cut to 100 characters plus its size in bytes when longer; NULL as NULL.';
