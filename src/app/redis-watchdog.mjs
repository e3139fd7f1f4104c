// Runs a private redis-server for as long as the process that started it lives. Redis cannot watch
// its parent, and a parent killed with SIGKILL gets no chance to stop it, so this small process
// sits between them: its stdin is a pipe from the parent, which the kernel closes however the
// parent ends; at EOF (or SIGTERM) it stops redis-server with SIGTERM, so that the AOF is flushed.
// Plain JavaScript with Node's built-ins only: it must start in milliseconds, without tsx.
//
//   node redis-watchdog.mjs <grace-ms> <redis-server> [args...]
//
// Prints `pid <redis pid>` on stdout each time redis-server is spawned; exits with redis-server's code.
// A redis-server killed by a signal it was not sent from here (the OOM killer, SIGKILL, a crash) is
// started again on the same port and folder, where it replays its AOF: the clients reconnect by
// themselves (docs/RELIABILITY.md). An exit with a code (a bad flag, the port taken) is not retried.
import { spawn } from 'node:child_process';

const [graceArg, command, ...args] = process.argv.slice(2);
if (command === undefined) {
  process.stderr.write('usage: redis-watchdog.mjs <grace-ms> <redis-server> [args...]\n');
  process.exit(2);
}
// After the parent is gone, the worker it started may still be handing its job back through
// Redis: give it this long before stopping the server.
const graceMs = Number(graceArg) || 0;

// Restarts allowed within RESTART_WINDOW_MS: a server that keeps dying is left dead, and we exit.
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const restarts = [];
let redis;
let stopping = false;

function start() {
  redis = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  redis.once('spawn', () => process.stdout.write(`pid ${redis.pid}\n`));
  redis.once('error', (error) => {
    process.stderr.write(`${error.code === 'ENOENT' ? 'ENOENT' : error.message}\n`);
    process.exit(127);
  });
  redis.once('exit', (code, signal) => {
    const now = Date.now();
    while (restarts.length > 0 && now - restarts[0] > RESTART_WINDOW_MS) restarts.shift();
    if (!stopping && signal !== null && code === null && restarts.length < MAX_RESTARTS) {
      restarts.push(now);
      process.stderr.write(`redis-server was killed (${signal}); starting it again\n`);
      start();
      return;
    }
    process.exit(code ?? (signal === 'SIGTERM' ? 0 : 1));
  });
}

function stop(delayMs) {
  if (stopping) return;
  stopping = true;
  setTimeout(() => {
    redis.kill('SIGTERM');
    // A server that does not stop in time is killed: nothing may outlive the stack.
    setTimeout(() => redis.kill('SIGKILL'), 10_000).unref();
  }, delayMs);
}

start();

process.on('SIGTERM', () => stop(0));
// Ctrl-C reaches the whole foreground process group; the parent decides when Redis stops.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => stop(graceMs));
process.stdin.on('end', () => stop(graceMs));
process.stdin.on('error', () => stop(graceMs));
process.stdin.resume();
