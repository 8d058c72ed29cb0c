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
const { serveLocal } = require('./serve-local');

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

serveLocal('kinesalite-local', 'kinesalite', opts, 4567, kinesalite);
