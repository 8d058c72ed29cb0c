#!/usr/bin/env node
// kinesalite's own CLI has no --host and listens on every interface. This
// wrapper takes the same options and binds to 127.0.0.1 unless --host says
// otherwise, so the emulator is never reachable from outside the machine.
//
//   node kinesalite-local.js --port 4567 --createStreamMs 0 --deleteStreamMs 0 \
//        --updateStreamMs 0 --shardLimit 10000

'use strict';

const path = require('path');

// minimist is kinesalite's own dependency; resolve it from kinesalite's
// directory so the wrapper parses options exactly as the stock CLI does,
// wherever npm chose to place the package.
const kinesaliteDir = path.dirname(require.resolve('kinesalite/package.json'));
const minimist = require(require.resolve('minimist', { paths: [kinesaliteDir] }));
const kinesalite = require('kinesalite');
const { tolerateClientAborts } = require('./client-aborts');

const opts = minimist(process.argv.slice(2), { string: ['host', 'path'] });

if (opts.help) {
  console.log([
    'Usage: kinesalite-local.js [--host <addr>] [--port <port>] [kinesalite options]',
    '',
    '--host <addr>          Address to bind (default: 127.0.0.1)',
    '--port <port>          Port to listen on (default: 4567)',
    '--path <path>          LevelDB store directory (in-memory by default)',
    '--createStreamMs <ms>  Time streams stay CREATING (kinesalite default: 500)',
    '--deleteStreamMs <ms>  Time streams stay DELETING (kinesalite default: 500)',
    '--updateStreamMs <ms>  Time streams stay UPDATING (kinesalite default: 500)',
    '--shardLimit <n>       Open-shard limit for the whole server (kinesalite default: 10)',
  ].join('\n'));
  process.exit(0);
}

const host = opts.host || '127.0.0.1';
const port = Number(opts.port === undefined ? 4567 : opts.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('kinesalite-local: invalid --port %j', opts.port);
  process.exit(2);
}

// As PID 1 (e.g. in a container) Node ignores SIGINT/SIGTERM unless handled.
if (process.pid === 1) {
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
}

tolerateClientAborts('kinesalite-local');

const server = kinesalite(opts);
server.on('error', (err) => {
  // EADDRINUSE and friends: exit non-zero so the start script sees the death
  // and prints this line from the log.
  console.error('kinesalite-local: cannot listen on %s:%d: %s', host, port, err.code || err.message);
  process.exit(1);
});
server.listen(port, host, () => {
  const addr = server.address();
  console.log('kinesalite listening on http://%s:%d', addr.address, addr.port);
});
