'use strict';
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

module.exports = { tolerateClientAborts, isClientAbort };
