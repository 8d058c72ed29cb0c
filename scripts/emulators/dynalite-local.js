#!/usr/bin/env node
// dynalite's own CLI, with one difference: a client that closes its
// connection in the middle of sending a request no longer kills the server
// (see client-aborts.js). Takes the CLI's options:
//
//   node dynalite-local.js --host 127.0.0.1 --port 4568 --createTableMs 0 \
//        --deleteTableMs 0 --updateTableMs 0

'use strict';

const path = require('path');
const { tolerateClientAborts } = require('./client-aborts');

// minimist is dynalite's own dependency; resolve it from dynalite's
// directory so the options parse exactly as the stock CLI parses them.
const dynaliteDir = path.dirname(require.resolve('dynalite/package.json'));
const minimist = require(require.resolve('minimist', { paths: [dynaliteDir] }));
const dynalite = require('dynalite');

const opts = minimist(process.argv.slice(2), { string: ['host', 'path'] });

if (opts.help) {
  console.log([
    'Usage: dynalite-local.js [--host <addr>] [--port <port>] [dynalite options]',
    '',
    '--host <addr>          Address to bind (default: 127.0.0.1)',
    '--port <port>          Port to listen on (default: 4568)',
    '--path <path>          LevelDB store directory (in-memory by default)',
    '--createTableMs <ms>   Time tables stay CREATING (dynalite default: 500)',
    '--deleteTableMs <ms>   Time tables stay DELETING (dynalite default: 500)',
    '--updateTableMs <ms>   Time tables stay UPDATING (dynalite default: 500)',
  ].join('\n'));
  process.exit(0);
}

const host = opts.host || '127.0.0.1';
const port = Number(opts.port === undefined ? 4568 : opts.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('dynalite-local: invalid --port %j', opts.port);
  process.exit(2);
}

// As PID 1 (e.g. in a container) Node ignores SIGINT/SIGTERM unless handled.
if (process.pid === 1) {
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
}

tolerateClientAborts('dynalite-local');

const server = dynalite(opts);
server.on('error', (err) => {
  // EADDRINUSE and friends: exit non-zero so the start script sees the death
  // and prints this line from the log.
  console.error('dynalite-local: cannot listen on %s:%d: %s', host, port, err.code || err.message);
  process.exit(1);
});
server.listen(port, host, () => {
  const addr = server.address();
  console.log('dynalite listening on http://%s:%d', addr.address, addr.port);
});
