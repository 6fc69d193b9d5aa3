/**
 * The id of the topic named by a parameter, as an SQL expression: `where topic_id =
 * ${topicIdOf('$1')}`. bucketq's log is partitioned by topic_id, so Postgres reads the
 * topic's own partitions alone; a filter on the topic's name (`topic = $1` on
 * bucketq.messages) is a join it runs over every topic's log.
 */
export const topicIdOf = (param: string): string => `(select topic_id from bucketq.topics where name = ${param})`;
