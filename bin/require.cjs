// `require('bucketq')`: bucketq is an ES module. Node 20.19+ and 22.12+ load ES modules
// from require() (require(esm)); older versions cannot, and get an error that says so.
'use strict';
try {
  module.exports = require('../dist/src/index.js');
} catch (err) {
  if (err && (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
    throw new Error(
      `require('bucketq'): bucketq is an ES module and this Node (${process.version}) cannot require() ES modules. ` +
        `Use \`const { BucketQ } = await import('bucketq')\`, or upgrade to Node 20.19+ or 22.12+, where require() loads it.`,
      { cause: err },
    );
  }
  throw err;
}
