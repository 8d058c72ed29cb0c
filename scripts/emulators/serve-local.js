'use strict';
// What the emulator wrappers (kinesalite-local.js, dynalite-local.js) share:
// bind to loopback unless told otherwise, exit on signals as PID 1, report a
// failure to listen, and survive clients that abort a request mid-body.

// kinesalite and dynalite both attach `req.on('error', err => { throw err })`
// to every request. When a client closes its connection before it has sent
// the whole body (an SDK call cancelled mid-write, e.g. a 20 kB
// BatchWriteItem whose context ends on shutdown), Node reports
// `Error: aborted` (ECONNRESET) on that request, the throw escapes, and the
// emulator process dies, taking every other test's client down with it. No
// one is waiting for an answer to such a request and the emulator has not
// started to act on it (both act only once the body is complete), so it is
// safe to drop. Any other uncaught error still ends the process as before.
function isClientAbort(err) {
  return err instanceof Error && err.code === 'ECONNRESET' && err.message === 'aborted';
}

function tolerateClientAborts(name) {
  let dropped = 0;
  process.on('uncaughtException', (err) => {
    if (isClientAbort(err)) {
      dropped++;
      console.error('%s: a client closed its connection before sending a whole request; dropped it (%d so far)', name, dropped);
      return;
    }
    console.error(err);
    process.exit(1);
  });
}

// serveLocal starts the emulator made by makeServer(opts) on --host
// (default 127.0.0.1) and --port (default defaultPort), logging
// "<label> listening on http://host:port" once it listens.
function serveLocal(name, label, opts, defaultPort, makeServer) {
  const host = opts.host || '127.0.0.1';
  const port = Number(opts.port === undefined ? defaultPort : opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('%s: invalid --port %j', name, opts.port);
    process.exit(2);
  }

  // As PID 1 (e.g. in a container) Node ignores SIGINT/SIGTERM unless handled.
  if (process.pid === 1) {
    process.on('SIGINT', () => process.exit(130));
    process.on('SIGTERM', () => process.exit(143));
  }

  tolerateClientAborts(name);

  const server = makeServer(opts);
  server.on('error', (err) => {
    // EADDRINUSE and friends: exit non-zero so the start script sees the
    // death and prints this line from the log.
    console.error('%s: cannot listen on %s:%d: %s', name, host, port, err.code || err.message);
    process.exit(1);
  });
  server.listen(port, host, () => {
    const addr = server.address();
    console.log('%s listening on http://%s:%d', label, addr.address, addr.port);
  });
}

module.exports = { serveLocal, tolerateClientAborts, isClientAbort };
