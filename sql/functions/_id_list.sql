-- What an error message lists of an array of ids: all of them up to 10, else the first
-- 10 and how many there are. An ack of 3,200 stale messages raised an error of 20 KB,
-- every id of the call.
create or replace function bucketq._id_list(ids bigint[]) returns text
language sql immutable parallel safe as $$
  select case when ids is null then 'NULL'
              when cardinality(ids) <= 10 then ids::text
              else format('{%s,…} (%s in all)',
                          (select string_agg(u.id::text, ',' order by u.n) from unnest(ids) with ordinality as u(id, n) where u.n <= 10),
                          cardinality(ids)) end
$$;

comment on function bucketq._id_list(bigint[]) is
'For error messages: the ids as an array literal when 10 or fewer, else the first 10 and the count.';
