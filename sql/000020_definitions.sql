-- bucketq 000020: functions and views become a repeatable step.
--
-- From here on, numbered migrations hold tables, indexes and data moves only. The
-- current definition of each function and view lives once, in sql/functions/NAME.sql
-- or sql/views/NAME.sql; migrate() applies all of them after the migrations whenever
-- their hash differs from the one recorded here, then runs bucketq._grant_roles().

create table bucketq.definitions (
  singleton  boolean primary key default true check (singleton),
  hash       text not null,
  applied_at timestamptz not null default now()
);
comment on table bucketq.definitions is 'sha256 of the sql/functions and sql/views files last applied by migrate(); a different hash makes migrate() apply them again.';

insert into bucketq.migration (version, name) values (20, 'definitions');
