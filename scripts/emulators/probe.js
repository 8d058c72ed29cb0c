#!/usr/bin/env node
// Helpers for emulators.sh that would be slow or fragile in bash.
//
//   node probe.js ports PORT...
//     For each PORT (0 = pick one), bind 127.0.0.1:PORT and print the bound
//     ports on one line. All sockets are held until every port is bound, so
//     the automatically picked ports are distinct from each other and from the
//     fixed ones. Exits 1 naming the first fixed port that is busy.
//
//   node probe.js ready KIND URL PID TIMEOUT_MS
//     Poll every 50 ms until the emulator at URL answers a real request
//     (KIND: kinesis | dynamodb | moto). Exit 0 when ready, 3 if PID died
//     first, 4 on timeout. A single long-lived poller avoids starting a
//     process per attempt, which alone would take longer than 50 ms.

'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');

function die(code, ...msg) {
  console.error(...msg);
  process.exit(code);
}

function ports(args) {
  const wanted = args.map((a) => {
    const n = Number(a);
    if (!Number.isInteger(n) || n < 0 || n > 65535) die(2, 'probe: invalid port %j', a);
    return n;
  });
  const fixed = wanted.filter((p) => p !== 0);
  if (new Set(fixed).size !== fixed.length) die(1, 'the same port was given twice: %s', fixed.join(' '));

  const servers = [];
  const bound = new Array(wanted.length);
  let pending = wanted.length;
  if (pending === 0) return;
  wanted.forEach((port, i) => {
    const srv = net.createServer();
    servers.push(srv);
    srv.once('error', (err) => {
      if (err.code === 'EADDRINUSE') die(1, 'port %d on 127.0.0.1 is busy', port);
      die(1, 'cannot bind 127.0.0.1:%d: %s', port, err.code || err.message);
    });
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      bound[i] = srv.address().port;
      if (--pending === 0) {
        let open = servers.length;
        servers.forEach((s) => s.close(() => {
          if (--open === 0) console.log(bound.join(' '));
        }));
      }
    });
  });
}

// The kinesalite probe must be a real API call: GET / answers 403 even when
// the server is up, and a request without auth headers is rejected before
// the server touches its store.
const probes = {
  kinesis: {
    method: 'POST',
    path: '/',
    body: '{}',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': 'Kinesis_20131202.ListStreams',
      'X-Amz-Date': '20260101T000000Z',
      Authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, ' +
        'SignedHeaders=host;x-amz-date, Signature=00',
    },
    ok: (status, body) => status === 200 && /"StreamNames"/.test(body),
  },
  dynamodb: {
    method: 'GET',
    path: '/',
    ok: (status, body) => status === 200 && /healthy/i.test(body),
  },
  moto: {
    method: 'GET',
    path: '/moto-api/',
    ok: (status) => status === 200,
  },
};

// kill(pid, 0) succeeds on a zombie, so read the state field of
// /proc/<pid>/stat instead: missing or 'Z' means the server is gone.
function dead(pid) {
  let stat;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ESRCH') return true;
    // No procfs (not Linux): fall back to a signal-0 check.
    try { process.kill(pid, 0); return false; } catch (e) { return e.code === 'ESRCH'; }
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  return state === 'Z' || state === 'X';
}

function attempt(probe, url) {
  return new Promise((resolve) => {
    const u = new URL(probe.path, url);
    const req = http.request(u, { method: probe.method, headers: probe.headers, timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { if (body.length < 4096) body += c; });
      res.on('end', () => resolve(probe.ok(res.statusCode, body)));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end(probe.body);
  });
}

async function ready([kind, url, pidArg, timeoutArg]) {
  const probe = probes[kind];
  if (!probe) die(2, 'probe: unknown kind %j (want %s)', kind, Object.keys(probes).join(', '));
  const pid = Number(pidArg);
  const deadline = Date.now() + Number(timeoutArg || 15000);
  for (;;) {
    if (dead(pid)) process.exit(3);
    if (await attempt(probe, url)) process.exit(0);
    if (Date.now() >= deadline) process.exit(4);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const [cmd, ...rest] = process.argv.slice(2);
switch (cmd) {
  case 'ports': ports(rest); break;
  case 'ready': ready(rest); break;
  default: die(2, 'usage: probe.js ports PORT... | probe.js ready KIND URL PID TIMEOUT_MS');
}
