// An example handler for `bucketq worker --handler examples/handler.js`.
// It records each message in a table through the transaction it is given, so the
// effect commits if and only if the ack does (exactly-once effects).
export default async function handler(message, ctx) {
  await ctx.client.query(
    `insert into example_orders (msg_id, key, key_seq, payload) values ($1, $2, $3, $4)
     on conflict (msg_id) do nothing`,
    [message.msgId, message.key, message.keySeq, message.payload],
  );
  ctx.log.debug({ msgId: message.msgId, key: message.key, keySeq: message.keySeq }, 'handled');
}
