// Diagnostic: where a Discord ack's time goes in the in-process burst. Hooks (prototype wraps, no
// change to the code under test) time each interaction at: the fake's gateway dispatch, discord.js's
// raw packet, interactionCreate, deferReply called, the callback request reaching the fake's REST,
// deferReply resolved. Run: node --expose-gc --import tsx bench/soak/ack-stages.ts [--quick]
import { performance } from 'node:perf_hooks';
import { ChatInputCommandInteraction, Client } from 'discord.js';
import { FakeGateway } from '../../test/helpers/fake-discord/gateway.js';
import { FakeRest } from '../../test/helpers/fake-discord/rest.js';
import { percentile } from '../lib.js';
import { runBurst } from './burst.js';
import { FULL_BURST } from './burst-soak.js';

type Stage = 'sent' | 'raw' | 'create' | 'defer' | 'request' | 'deferred';
const at = new Map<string, Partial<Record<Stage, number>>>();
const mark = (id: string, stage: Stage) => {
  const e = at.get(id) ?? {};
  e[stage] ??= performance.now();
  at.set(id, e);
};
const gw = FakeGateway.prototype as unknown as { dispatch: (t: string, d: unknown) => void };
const dispatch = gw.dispatch;
gw.dispatch = function (this: unknown, t: string, d: unknown) {
  if (t === 'INTERACTION_CREATE') mark((d as { id: string }).id, 'sent');
  return dispatch.call(this, t, d);
};
const emit = Client.prototype.emit;
Client.prototype.emit = function (this: Client, event: string, ...args: unknown[]) {
  if (event === 'raw') {
    const p = args[0] as { t?: string; d?: { id: string } };
    if (p.t === 'INTERACTION_CREATE' && p.d) mark(p.d.id, 'raw');
  } else if (event === 'interactionCreate') mark((args[0] as { id: string }).id, 'create');
  return emit.call(this, event as never, ...(args as never[]));
} as typeof Client.prototype.emit;
const proto = ChatInputCommandInteraction.prototype as unknown as {
  deferReply: (...a: unknown[]) => Promise<unknown>;
};
const defer = proto.deferReply;
proto.deferReply = function (this: { id: string }, ...a: unknown[]) {
  mark(this.id, 'defer');
  return defer.apply(this, a).finally(() => mark(this.id, 'deferred'));
};
const rest = FakeRest.prototype as unknown as { handle: (...a: unknown[]) => Promise<void> };
const handle = rest.handle;
rest.handle = function (this: unknown, ...a: unknown[]) {
  const m = /^\/v10\/interactions\/(\d+)\//.exec(String(a[2]));
  if (m) mark(m[1]!, 'request');
  return handle.apply(this, a);
};
const elu0 = performance.eventLoopUtilization();
const quick = process.argv.includes('--quick');
const o = { ...FULL_BURST, ...(quick ? { discordUsers: 30, slackUsers: 10 } : {}), workers: 1 };
const figures = await runBurst({ ...o, log: (l) => console.log(`  ${l}`) });
const elu = performance.eventLoopUtilization(elu0);
const rows: [string, Stage, Stage][] = [
  ['dispatch -> raw packet', 'sent', 'raw'],
  ['raw -> interactionCreate', 'raw', 'create'],
  ['interactionCreate -> deferReply', 'create', 'defer'],
  ['deferReply -> request at fake', 'defer', 'request'],
  ['request at fake -> deferReply resolved', 'request', 'deferred'],
  ['dispatch -> request at fake (ack)', 'sent', 'request'],
];
const firstSent = Math.min(...[...at.values()].map((e) => e.sent ?? Number.POSITIVE_INFINITY));
const stat = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return `n ${s.length} p50 ${percentile(s, 50).toFixed(0)} p99 ${percentile(s, 99).toFixed(0)} max ${(s.at(-1) ?? Number.NaN).toFixed(0)}`;
};
for (const [name, a, b] of rows)
  console.log(
    `${name.padEnd(42)} ${stat([...at.values()].map((e) => (e[b] ?? Number.NaN) - (e[a] ?? Number.NaN)))}`,
  );
for (const s of ['sent', 'raw', 'create', 'defer', 'request', 'deferred'] as Stage[])
  console.log(
    `${`${s}: ms after the first dispatch`.padEnd(42)} ${stat([...at.values()].map((e) => (e[s] ?? Number.NaN) - firstSent))}`,
  );
const off = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
const lastReq = Math.max(...[...at.values()].map((e) => e.request ?? 0));
console.log(
  `window (profile µs): ${(firstSent * 1000 + off).toFixed(0)} ${(lastReq * 1000 + off).toFixed(0)}`,
);
console.log(`event loop utilization over the run: ${(elu.utilization * 100).toFixed(0)}%`);
console.log(
  `missed ${figures.missedAcks}; ack discord p50/p99 ${stat(figures.ackMs.discord)}; slack ${stat(figures.ackMs.slack)}`,
);
process.exit(0);
