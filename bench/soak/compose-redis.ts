// Redis of the compose deployment SIGKILLed mid-load: docker-compose.yml as shipped (plus
// docker-compose.cpu.yml for a host without an NVIDIA GPU, and the bot's imagine quota lifted, since
// the playground is one person whose 2 concurrent jobs would otherwise be the whole load) under a
// project name of its own. Imagine jobs go through the playground's API on its published loopback
// port at a steady rate, each followed over its event stream as the page does; half-way the
// redis-server process is SIGKILLed from the host (as the OOM killer or a crash would: `docker kill`
// tells the engine the stop was wanted and `restart: unless-stopped` would then leave it down), and
// the submissions go on. Then: every submission that got its 202 finished, with exactly one `done`
// on its stream and one `completed` in the queue's event stream; the queue is empty; no container but
// redis restarted; the bot's and the worker's /healthz answer 200 again; every wait has a deadline.
// Without a Docker engine it skips with one line. Images: the real ones where a registry is
// reachable; tools/compose-standin-images.sh builds local stand-ins where none is.
// Flags: --rate=4 (submissions a second), --seconds=40, --steps=16, --drain=240 (seconds for the
// finals, Redis and /healthz after the load), --fault=kill-9|docker-kill (the second is not
// restarted by the engine: a run that shows the checks failing), --keep (leave the stack up).
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { percentile, type Row } from '../lib.js';
import { aofDelayedFsync } from './aof.js';
import type { SoakModule } from './lib.js';

const PROJECT = 'vqclip-soak';
const PREFIX = 'vqclip';
const IMAGES = ['redis:7-bookworm', 'pgvector/pgvector:pg16', 'vqclip:cpu'] as const;

interface Sh {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command with a deadline (killed past it) and optional stdin; never throws. */
function sh(
  command: string,
  args: readonly string[],
  options: { timeoutMs: number; input?: string; env?: NodeJS.ProcessEnv },
): Promise<Sh> {
  return new Promise((done) => {
    const child: ChildProcess = execFile(
      command,
      args,
      { timeout: options.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env: options.env },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        const killed = error && (error as { killed?: boolean }).killed;
        done({
          code,
          stdout: String(stdout),
          stderr: killed ? `${stderr}\n(killed after ${options.timeoutMs} ms)` : String(stderr),
        });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

/** `docker compose` (v2) or `docker-compose` (v1), whichever answers. */
async function composeCommand(): Promise<string[] | undefined> {
  if ((await sh('docker', ['compose', 'version'], { timeoutMs: 15_000 })).code === 0)
    return ['docker', 'compose'];
  if ((await sh('docker-compose', ['version'], { timeoutMs: 15_000 })).code === 0) return ['docker-compose'];
  return undefined;
}

interface ContainerState {
  id: string;
  service: string;
  restartCount: number;
  startedAt: string;
  pid: number;
  running: boolean;
  health: string;
}

async function inspect(ids: readonly string[]): Promise<ContainerState[]> {
  const r = await sh('docker', ['inspect', ...ids], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`docker inspect failed: ${r.stderr.trim()}`);
  const list = JSON.parse(r.stdout) as Array<{
    Id: string;
    RestartCount: number;
    Config: { Labels: Record<string, string> };
    State: { StartedAt: string; Pid: number; Running: boolean; Health?: { Status: string } };
  }>;
  return list.map((c) => ({
    id: c.Id,
    service: c.Config.Labels['com.docker.compose.service'] ?? '?',
    restartCount: c.RestartCount,
    startedAt: c.State.StartedAt,
    pid: c.State.Pid,
    running: c.State.Running,
    health: c.State.Health?.Status ?? 'none',
  }));
}

/** What one followed submission saw on its event stream (the page's view of it). */
interface Followed {
  jobId: string;
  acceptedAt: number;
  done: number;
  failed: number;
  failCode?: string | undefined;
  /** Streams that ended without a final event and were opened again (as EventSource does). */
  reopened: number;
  finishedAt?: number;
}

/** Reads one event stream to its end; counts the events by name. */
async function readEvents(
  url: string,
  auth: string,
  deadline: number,
  onEvent: (event: string, data: string) => void,
): Promise<void> {
  const response = await fetch(url, {
    headers: { authorization: auth, accept: 'text/event-stream' },
    signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
  });
  if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  let event = 'message';
  let data = '';
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line === '') {
        if (data !== '') onEvent(event, data);
        event = 'message';
        data = '';
      } else if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
      nl = buffer.indexOf('\n');
    }
  }
}

async function follow(base: string, auth: string, f: Followed, deadline: number): Promise<void> {
  const url = `${base}/api/jobs/${encodeURIComponent(f.jobId)}/events`;
  while (Date.now() < deadline && f.done + f.failed === 0) {
    try {
      await readEvents(url, auth, deadline, (event, data) => {
        if (event === 'done') f.done++;
        if (event === 'failed') {
          f.failed++;
          f.failCode = (JSON.parse(data) as { code?: string }).code;
        }
      });
    } catch {
      // The stream broke (or its deadline passed): opened again below while time is left.
    }
    if (f.done + f.failed > 0) break;
    f.reopened++;
    await sleep(500);
  }
  if (f.done + f.failed > 0) f.finishedAt = Date.now();
}

/** GET /healthz of a service, from inside its container (the port is not published). */
async function healthz(containerId: string, port: number): Promise<number> {
  const script = `fetch('http://127.0.0.1:${port}/healthz').then((r) => { console.log(r.status); }, () => console.log(0))`;
  const r = await sh('docker', ['exec', containerId, 'node', '-e', script], { timeoutMs: 15_000 });
  return Number(r.stdout.trim()) || 0;
}

/** Polls /healthz until 200 from `since` on; when it first answered 200 and whether a non-200 was seen. */
async function healthRecovery(
  containerId: string,
  port: number,
  deadline: number,
  outageOver: () => boolean,
): Promise<{ sawDown: boolean; okAt?: number }> {
  let sawDown = false;
  while (Date.now() < deadline) {
    const status = await healthz(containerId, port);
    if (status !== 200) sawDown = true;
    else if (outageOver()) return { sawDown, okAt: Date.now() };
    await sleep(500);
  }
  return { sawDown };
}

export const composeRedisSoak: SoakModule = {
  name: 'compose-redis',
  description:
    "the compose deployment's redis-server SIGKILLed mid-load: every accepted job done once, only redis restarted",
  async run(options) {
    const skip = (why: string) => ({
      failures: [],
      tables: [],
      notes: [`skipped: ${why}`],
      details: { skipped: why },
    });
    const engine = await sh('docker', ['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 20_000 });
    if (engine.code !== 0)
      return skip(`no Docker engine reachable (docker info: ${engine.stderr.trim().split('\n')[0] ?? ''})`);
    const compose = await composeCommand();
    if (!compose) return skip('neither `docker compose` nor `docker-compose` is installed');
    const missing: string[] = [];
    for (const image of IMAGES)
      if ((await sh('docker', ['image', 'inspect', image], { timeoutMs: 20_000 })).code !== 0)
        missing.push(image);
    if (missing.length > 0)
      throw new Error(
        `images missing: ${missing.join(', ')}. Build them: docker-compose -f docker-compose.yml -f docker-compose.cpu.yml build (and pull), or without a registry tools/compose-standin-images.sh`,
      );

    const rate = Number(options.flags.rate ?? (options.quick ? 2 : 4));
    const seconds = Number(options.flags.seconds ?? (options.quick ? 20 : 40));
    const steps = Number(options.flags.steps ?? (options.quick ? 8 : 16));
    const keep = options.flags.keep === 'true';
    // How long accepted jobs may take to finish after the load, and Redis and /healthz to come back.
    const drainSeconds = Number(options.flags.drain ?? 240);
    // `docker-kill` is the fault the engine does not restart (a wanted stop): it shows the checks fail.
    const fault = options.flags.fault ?? 'kill-9';
    if (!(rate > 0 && rate <= 50 && seconds >= 6 && seconds <= 300 && steps >= 1 && steps <= 200))
      throw new Error('--rate must be 0-50 per second, --seconds 6-300, --steps 1-200');
    if (!(drainSeconds >= 10 && drainSeconds <= 600)) throw new Error('--drain must be 10-600 seconds');
    if (fault !== 'kill-9' && fault !== 'docker-kill')
      throw new Error('--fault must be kill-9 or docker-kill');

    const root = resolve('.');
    const scratch = await mkdtemp(join(options.dataRoot, 'soak-compose-'));
    const override = join(scratch, 'soak.yml');
    // The only change to the deployment: the playground's one person gets no quota.
    await writeFile(
      override,
      'services:\n  bot:\n    environment:\n      QUOTA_CONCURRENT_JOBS: "0"\n      QUOTA_JOBS_PER_HOUR: "0"\n',
    );
    const password = randomBytes(18).toString('base64url');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PLAYGROUND_PASSWORD: password,
      PLAYGROUND_PORT: String(port),
      SLACK_HTTP_PORT: String(await freePort()),
      POSTGRES_PASSWORD: randomBytes(12).toString('base64url'),
      QUEUE_PREFIX: PREFIX,
      COMPOSE_PROFILES: '',
    };
    for (const k of [
      'COMPOSE_FILE',
      'COMPOSE_PROJECT_NAME',
      'DISCORD_TOKEN',
      'SLACK_BOT_TOKEN',
      'SLACK_APP_TOKEN',
    ])
      delete env[k];
    const files = [join(root, 'docker-compose.yml'), join(root, 'docker-compose.cpu.yml'), override];
    const dc = (args: readonly string[], timeoutMs: number, input?: string) =>
      sh(compose[0]!, [...compose.slice(1), '-p', PROJECT, ...files.flatMap((f) => ['-f', f]), ...args], {
        timeoutMs,
        env,
        ...(input === undefined ? {} : { input }),
      });
    const must = async (what: string, r: Promise<Sh>) => {
      const out = await r;
      if (out.code !== 0)
        throw new Error(
          `${what} failed (exit ${out.code}): ${(out.stderr || out.stdout).trim().slice(-2000)}`,
        );
      return out;
    };
    const phases: Record<string, number> = {};
    const phase = async <T>(name: string, f: () => Promise<T>) => {
      const t0 = Date.now();
      try {
        return await f();
      } finally {
        phases[name] = (Date.now() - t0) / 1000;
      }
    };

    try {
      if ((await dc(['ps', '-q'], 30_000)).stdout.trim() !== '')
        await must(
          'taking down a leftover soak project',
          dc(['down', '-v', '--remove-orphans', '-t', '10'], 180_000),
        );
      // Tiny random models in the models volume (the compose file's header shows the command).
      await phase('models', () =>
        must(
          'writing tiny models',
          dc(
            [
              'run',
              '--rm',
              '--no-deps',
              'worker-cpu',
              'node',
              '--import',
              'tsx',
              'src/worker/models/cli.ts',
              'random',
              '--preset',
              'tiny',
              '--out',
              '/models',
            ],
            300_000,
          ),
        ),
      );
      await phase('up', () => must('docker-compose up', dc(['up', '-d', '--no-build'], 300_000)));
      const ids = (await must('docker-compose ps', dc(['ps', '-q'], 30_000))).stdout.trim().split(/\s+/);
      const byService = async () => new Map((await inspect(ids)).map((c) => [c.service, c]));
      await phase('healthy', async () => {
        const until = Date.now() + 240_000;
        for (;;) {
          const states = [...(await byService()).values()];
          if (states.every((c) => c.health === 'healthy')) return;
          if (Date.now() > until)
            throw new Error(
              `not healthy within 240 s: ${states.map((c) => `${c.service} ${c.health}`).join(', ')}`,
            );
          await sleep(2_000);
        }
      });
      const before = await byService();
      const redis = before.get('redis');
      const bot = before.get('bot');
      const worker = before.get('worker-cpu');
      if (!redis || !bot || !worker) throw new Error(`services up: ${[...before.keys()].join(', ')}`);

      const base = `http://127.0.0.1:${port}`;
      const auth = `Bearer ${password}`;
      const unauthorised = (await fetch(`${base}/api/info`, { signal: AbortSignal.timeout(10_000) })).status;
      const redisCli = (args: readonly string[], input?: string) =>
        sh('docker', ['exec', ...(input === undefined ? [] : ['-i']), redis.id, 'redis-cli', ...args], {
          timeoutMs: 60_000,
          ...(input === undefined ? {} : { input }),
        });

      // --- load, and the kill half-way ---------------------------------------------------------
      const followed: Followed[] = [];
      const follows: Promise<void>[] = [];
      const refused = new Map<string, number>();
      /** What the person is told, per kind of refusal (the first of each). */
      const refusalTexts = new Map<string, string>();
      const latencies: number[] = [];
      const drainMs = drainSeconds * 1000;
      const t0 = Date.now();
      const loadEnd = t0 + seconds * 1000;
      const killAt = t0 + (seconds * 1000) / 2;
      let killedAt = 0;
      let backAt = 0;
      let atKill = { waiting: 0, active: 0 };
      const submitter = (async () => {
        const inFlight: Promise<void>[] = [];
        for (let i = 0; Date.now() < loadEnd; i++) {
          const due = t0 + (i * 1000) / rate;
          if (due > Date.now()) await sleep(due - Date.now());
          if (due >= loadEnd) break;
          inFlight.push(
            (async () => {
              const s0 = Date.now();
              try {
                const response = await fetch(`${base}/api/imagine`, {
                  method: 'POST',
                  headers: { authorization: auth, 'content-type': 'application/json' },
                  body: JSON.stringify({ prompt: `soak ${i}`, seed: i, steps, width: 64, height: 64 }),
                  signal: AbortSignal.timeout(30_000),
                });
                const body = (await response.json()) as {
                  jobId?: string;
                  error?: { code?: string; message?: string };
                };
                if (response.status === 202 && body.jobId) {
                  latencies.push(Date.now() - s0);
                  const f: Followed = {
                    jobId: body.jobId,
                    acceptedAt: Date.now(),
                    done: 0,
                    failed: 0,
                    reopened: 0,
                  };
                  followed.push(f);
                  follows.push(follow(base, auth, f, loadEnd + drainMs));
                } else {
                  const why = `HTTP ${response.status} ${body.error?.code ?? ''}`.trim();
                  refused.set(why, (refused.get(why) ?? 0) + 1);
                  if (!refusalTexts.has(why)) refusalTexts.set(why, body.error?.message ?? '');
                }
              } catch (error) {
                const why = `no answer (${(error as Error).name})`;
                refused.set(why, (refused.get(why) ?? 0) + 1);
              }
            })(),
          );
        }
        await Promise.all(inFlight);
      })();
      const killer = (async () => {
        await sleep(Math.max(0, killAt - Date.now()));
        const { pid } = (await inspect([redis.id]))[0]!;
        const depth = (
          await redisCli([], `LLEN ${PREFIX}:imagine:wait\nLLEN ${PREFIX}:imagine:active\n`)
        ).stdout.split('\n');
        atKill = { waiting: Number(depth[0]?.trim() || 0), active: Number(depth[1]?.trim() || 0) };
        killedAt = Date.now();
        if (fault === 'kill-9') process.kill(pid, 'SIGKILL');
        else await sh('docker', ['kill', '-s', 'KILL', redis.id], { timeoutMs: 30_000 });
        // Back: the engine started the container again (its restart count grew) and PING answers.
        const until = killedAt + Math.min(120_000, drainMs);
        while (Date.now() < until) {
          const now = (await inspect([redis.id]))[0]!;
          if (now.running && now.restartCount > redis.restartCount) {
            const ping = await redisCli(['ping']);
            if (ping.stdout.trim() === 'PONG') {
              backAt = Date.now();
              return;
            }
          }
          await sleep(100);
        }
      })();
      const healthUntil = killAt + Math.min(180_000, drainMs);
      const [, , botHealth, workerHealth] = await Promise.all([
        submitter,
        killer,
        (async () => {
          await sleep(Math.max(0, killAt - Date.now()));
          return healthRecovery(bot.id, 9464, healthUntil, () => backAt > 0);
        })(),
        (async () => {
          await sleep(Math.max(0, killAt - Date.now()));
          return healthRecovery(worker.id, 9465, healthUntil, () => backAt > 0);
        })(),
      ]);
      await phase('drain', () => Promise.all(follows));
      const drainedAt = Date.now();

      // --- the queue's side ----------------------------------------------------------------------
      const ids2 = followed.map((f) => f.jobId.slice('imagine:'.length));
      const scores = (
        await redisCli([], ids2.map((id) => `ZSCORE ${PREFIX}:imagine:completed ${id}\n`).join(''))
      ).stdout.split('\n');
      const notCompleted = ids2.filter((_, i) => (scores[i] ?? '').trim() === '').length;
      const events = await redisCli(['--no-raw', 'XRANGE', `${PREFIX}:imagine:events`, '-', '+']);
      // Each entry prints as "n) 1) id 2) 1) "event" 2) "completed" 3) "jobId" 4) "<id>" ...": read pairs.
      const completedEvents = new Map<string, number>();
      const flat = [...events.stdout.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
      for (let i = 0; i + 3 < flat.length; i++) {
        if (flat[i] === 'event' && flat[i + 1] === 'completed' && flat[i + 2] === 'jobId') {
          const id = flat[i + 3]!;
          completedEvents.set(id, (completedEvents.get(id) ?? 0) + 1);
        }
      }
      const firstEvent = (await redisCli(['XINFO', 'STREAM', `${PREFIX}:imagine:events`])).stdout;
      const streamLength = Number(/length\n(\d+)/.exec(firstEvent)?.[1] ?? Number.NaN);
      const completedOnce = ids2.filter((id) => completedEvents.get(id) === 1).length;
      const completedTwice = ids2.filter((id) => (completedEvents.get(id) ?? 0) > 1).length;
      const attempts = (
        await redisCli([], ids2.map((id) => `HGET ${PREFIX}:imagine:${id} atm\n`).join(''))
      ).stdout
        .split('\n')
        .slice(0, ids2.length)
        .map((v) => Number(v.trim() || 0));
      const retried = attempts.filter((a) => a > 1).length;
      const leftInQueue = (
        await redisCli(
          [],
          [
            `LLEN ${PREFIX}:imagine:wait`,
            `LLEN ${PREFIX}:imagine:active`,
            `ZCARD ${PREFIX}:imagine:delayed`,
            `ZCARD ${PREFIX}:imagine:prioritized`,
          ].join('\n'),
        )
      ).stdout
        .split('\n')
        .slice(0, 4)
        .reduce((s, v) => s + Number(v.trim() || 0), 0);
      const delayed = aofDelayedFsync((await redisCli(['info', 'persistence'])).stdout);

      // --- the containers ------------------------------------------------------------------------
      const after = await byService();
      const restarted = [...after.values()]
        .filter(
          (c) =>
            c.restartCount !== before.get(c.service)?.restartCount ||
            c.startedAt !== before.get(c.service)?.startedAt,
        )
        .map((c) => `${c.service} (${c.restartCount - (before.get(c.service)?.restartCount ?? 0)})`);

      const accepted = followed.length;
      const done = followed.filter((f) => f.done === 1 && f.failed === 0).length;
      const postedTwice = followed.filter((f) => f.done > 1).length;
      const failed = followed.filter((f) => f.failed > 0);
      const unfinished = followed.filter((f) => f.done + f.failed === 0).length;
      const acceptedAfter = followed.filter((f) => backAt > 0 && f.acceptedAt > backAt);
      // Accepted before the kill and not yet finished then: waiting, running or being followed.
      const openAtKill = followed.filter(
        (f) => f.acceptedAt < killedAt && (f.finishedAt === undefined || f.finishedAt > killedAt),
      ).length;
      const reopened = followed.reduce((s, f) => s + f.reopened, 0);
      const sorted = [...latencies].sort((a, b) => a - b);
      const sec = (ms: number) => (ms / 1000).toFixed(1);
      const refusals = [...refused.entries()].map(([k, v]) => `${v} ${k}`).join(', ') || '0';
      const holds = (ok: boolean) => (ok ? 'holds' : 'FAILS');
      const botOk = botHealth.okAt !== undefined;
      const workerOk = workerHealth.okAt !== undefined;
      const rows: Row[] = [
        {
          name: 'submissions (POST /api/imagine)',
          cells: {
            value: `${accepted + [...refused.values()].reduce((s, v) => s + v, 0)} over ${seconds} s at ${rate}/s`,
            check: '',
          },
        },
        { name: 'accepted (202)', cells: { value: accepted, check: '' } },
        { name: 'refused / no answer', cells: { value: refusals, check: '' } },
        {
          name: '202 latency p50 / p99 / max ms',
          cells: {
            value: `${percentile(sorted, 50).toFixed(0)} / ${percentile(sorted, 99).toFixed(0)} / ${(sorted.at(-1) ?? 0).toFixed(0)}`,
            check: '',
          },
        },
        {
          name: 'accepted: one `done` on the stream, no `failed`',
          cells: { value: `${done} of ${accepted}`, check: holds(done === accepted) },
        },
        {
          name: 'posted twice / failed / unfinished',
          cells: {
            value: `${postedTwice} / ${failed.length}${failed.length ? ` (${[...new Set(failed.map((f) => f.failCode))].join(', ')})` : ''} / ${unfinished}`,
            check: holds(postedTwice + failed.length + unfinished === 0),
          },
        },
        {
          name: 'in the completed set / one `completed` event',
          cells: {
            value: `${accepted - notCompleted} / ${completedOnce} (twice: ${completedTwice}; stream ${streamLength} entries)`,
            check: holds(notCompleted === 0 && completedOnce === accepted),
          },
        },
        { name: 'jobs that needed a second attempt', cells: { value: retried, check: '' } },
        {
          name: 'left in wait / active / delayed',
          cells: { value: leftInQueue, check: holds(leftInQueue === 0) },
        },
        {
          name: 'accepted after Redis was back, done',
          cells: {
            value: `${acceptedAfter.filter((f) => f.done === 1).length} of ${acceptedAfter.length}`,
            check: holds(acceptedAfter.length > 0 && acceptedAfter.every((f) => f.done === 1)),
          },
        },
        {
          name: 'at the kill: accepted, not finished (queue: waiting / active)',
          cells: { value: `${openAtKill} (${atKill.waiting} / ${atKill.active})`, check: '' },
        },
        {
          name: 'redis outage (SIGKILL to PONG after the engine restarted it)',
          cells: {
            value: backAt ? `${sec(backAt - killedAt)} s` : `not back in ${Math.min(120, drainSeconds)} s`,
            check: holds(backAt > 0),
          },
        },
        {
          name: 'containers restarted',
          cells: {
            value: restarted.join(', ') || 'none',
            check: holds(restarted.length === 1 && restarted[0]!.startsWith('redis ')),
          },
        },
        {
          name: 'bot /healthz: non-200 seen, 200 again after Redis',
          cells: {
            value: botOk
              ? `${botHealth.sawDown ? 'yes' : 'no'}, ${sec(botHealth.okAt! - backAt)} s`
              : `not 200 within ${Math.min(180, drainSeconds)} s`,
            check: holds(botOk),
          },
        },
        {
          name: 'worker /healthz: non-200 seen, 200 again after Redis',
          cells: {
            value: workerOk
              ? `${workerHealth.sawDown ? 'yes' : 'no'}, ${sec(workerHealth.okAt! - backAt)} s`
              : `not 200 within ${Math.min(180, drainSeconds)} s`,
            check: holds(workerOk),
          },
        },
        { name: 'event streams opened again', cells: { value: reopened, check: '' } },
        {
          name: 'drain (load end to last final)',
          cells: { value: `${sec(Math.max(0, drainedAt - loadEnd))} s`, check: holds(unfinished === 0) },
        },
        { name: 'aof_delayed_fsync', cells: { value: delayed, check: '' } },
        {
          name: 'playground without the password',
          cells: { value: `HTTP ${unauthorised}`, check: holds(unauthorised === 401) },
        },
      ];
      const failures = rows.filter((r) => r.cells.check === 'FAILS').map((r) => r.name);
      return {
        failures,
        tables: [
          {
            title: `compose redis ${fault === 'kill-9' ? 'SIGKILL' : 'docker kill -s KILL'} at ${sec(killedAt - t0)} s of ${seconds} s (project ${PROJECT})`,
            rows,
          },
        ],
        notes: [
          failures.length === 0 ? 'every check holds' : `FAILS: ${failures.join('; ')}`,
          ...[...refusalTexts].map(([why, text]) => `${why} said: ${text}`),
          `phases (s): ${Object.entries(phases)
            .map(([k, v]) => `${k} ${v.toFixed(0)}`)
            .join(', ')}`,
          `engine ${engine.stdout.trim()}, ${compose.join(' ')}; ${steps} steps at 64x64 on the tiny models, one worker-cpu`,
        ],
        details: {
          rate,
          seconds,
          steps,
          accepted,
          refused: Object.fromEntries(refused),
          refusalTexts: Object.fromEntries(refusalTexts),
          done,
          postedTwice,
          failed: failed.map((f) => ({ jobId: f.jobId, code: f.failCode })),
          unfinished,
          notCompleted,
          completedOnce,
          completedTwice,
          retried,
          leftInQueue,
          fault,
          drainSeconds,
          outageMs: backAt ? backAt - killedAt : null,
          atKill: { ...atKill, openAtKill },
          killedAfterMs: killedAt - t0,
          restarted,
          botHealth: { sawDown: botHealth.sawDown, okAfterBackMs: botOk ? botHealth.okAt! - backAt : null },
          workerHealth: {
            sawDown: workerHealth.sawDown,
            okAfterBackMs: workerOk ? workerHealth.okAt! - backAt : null,
          },
          reopened,
          latencyMs: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? null },
          phases,
          failures,
        },
      };
    } finally {
      if (!keep) {
        const down = await dc(['down', '-v', '--remove-orphans', '-t', '10'], 180_000);
        if (down.code !== 0) console.error(`docker-compose down failed: ${down.stderr.trim()}`);
      }
      await rm(scratch, { recursive: true, force: true });
    }
  },
};
