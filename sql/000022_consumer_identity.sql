-- bucketq 000022: consumers bound to the role that joined (issue 13, item 1). join
-- records bucketq._caller() in joined_by; heartbeat, claim, claim_locked, ack, nack,
-- record_attempt and leave refuse (42501) a caller that is not that role (admins and
-- the schema owner excepted), and a joined_by of NULL (a consumer that joined before
-- this migration) must join again (BQ008, which workers answer by joining).

alter table bucketq.consumer add column joined_by name;
comment on column bucketq.consumer.joined_by is
'The role that joined (bucketq._caller() at join): only it, admins and the schema owner may act as this consumer. NULL: joined before 000022; it must join again.';

insert into bucketq.migration (version, name) values (22, 'consumer_identity');
