#!/usr/bin/env node
// dynalite's own CLI, with one difference: a client that closes its
// connection in the middle of sending a request no longer kills the server
// (see serve-local.js). Takes the CLI's options:
//
//   node dynalite-local.js --host 127.0.0.1 --port 4568 --createTableMs 0 \
//        --deleteTableMs 0 --updateTableMs 0

'use strict';

const path = require('path');
const { serveLocal } = require('./serve-local');

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

serveLocal('dynalite-local', 'dynalite', opts, 4568, dynalite);
