-- bucketq 000023: scheduled messages. A schedule sends its payload to a topic at every
-- occurrence of a cron expression; the workers of that topic's groups fire it
-- (bucketq._due_schedules and _fire_schedules, sql/functions), one send per slot: the
-- row lock, a compare of the slot with next_at, and an idempotency key of name and
-- slot each stop a second send. Postgres does not parse cron: the client computes the
-- occurrences (next_at) and SQL checks that they lie ahead on whole minutes.

create table bucketq.schedule (
  name        text primary key,
  topic_id    int not null references bucketq.topic on delete cascade,
  cron        text not null,
  timezone    text not null default 'UTC',
  payload     jsonb not null,
  key         text,
  headers     jsonb,
  paused      boolean not null default false,
  next_at     timestamptz,   -- the slot that fires next; NULL: the first worker to see it computes it
  last_at     timestamptz,   -- the slot fired last
  last_msg_id bigint,
  last_error  text,          -- why the last slot was not sent, or why cron does not parse
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index schedule_due on bucketq.schedule (topic_id, next_at);
comment on table bucketq.schedule is 'Scheduled messages (create_schedule): payload sent to the topic at every occurrence of cron in timezone; next_at is the next slot. Read it through the view bucketq.schedules.';

insert into bucketq.migration (version, name) values (23, 'schedules');
