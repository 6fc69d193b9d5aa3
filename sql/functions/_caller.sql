-- Whom bucketq's own access checks (_group, producer rights, the views' filters) judge.
-- Inside the SECURITY DEFINER functions current_user is their owner, so the caller is
-- taken from the session: the role it switched to with SET ROLE, else its login
-- (session_user). SET ROLE thus narrows bucketq access for a pooled login exactly as it
-- narrows Postgres privileges. Postgres checked the switch when it was made (the login
-- may SET ROLE only to roles it may become), and a SECURITY DEFINER function cannot
-- SET ROLE, so the setting cannot be forged. A SECURITY DEFINER function of another owner
-- that calls bucketq is judged as the session, not as its owner.
create or replace function bucketq._caller() returns name
language sql stable parallel safe as $$
  select case when coalesce(current_setting('role', true), 'none') = 'none' then session_user
              else current_setting('role', true)::name end
$$;

comment on function bucketq._caller() is
'The role bucketq''s access checks judge: the session''s SET ROLE role if any, else session_user (inside SECURITY DEFINER functions current_user is the owner).';
