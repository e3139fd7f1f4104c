// What the soak modules share: the module shape (a name, a run that returns tables, notes and
// details, as the benchmarks do) and the options `npm run soak` passes them.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Client } from 'discord.js';
import { Events } from 'discord.js';
import { Redis } from 'ioredis';
import type { BenchResult } from '../lib.js';

export interface SoakOptions {
  /** Smaller and shorter runs (a smoke test of the soak itself). */
  quick: boolean;
  /** A folder on the disk DATA_DIR would use (the AOF measurement needs a real fsync). */
  dataRoot: string;
  /** `--name=value` flags of the command line, for a module's own settings. */
  flags: Readonly<Record<string, string>>;
}

/** A soak's figures, plus the checks that did not hold (`npm run soak` then exits 1). */
export interface SoakResult extends BenchResult {
  readonly failures: readonly string[];
}

export interface SoakModule {
  name: string;
  description: string;
  run(options: SoakOptions): Promise<SoakResult>;
}

/** Counts every ioredis command this process sends, per second bucket, until stop(). */
export function countRedisCommands(): { total(): number; perSecond: Map<number, number>; stop(): void } {
  const proto = Redis.prototype as unknown as { sendCommand: (...args: unknown[]) => unknown };
  const original = proto.sendCommand;
  let total = 0;
  const perSecond = new Map<number, number>();
  proto.sendCommand = function (this: unknown, ...args: unknown[]) {
    total++;
    const s = Math.floor(Date.now() / 1000);
    perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
    return original.apply(this, args);
  };
  const stop = () => {
    proto.sendCommand = original;
  };
  return { total: () => total, perSecond, stop };
}

/** Per interaction id, bot clock (Date.now): packet at discord.js, interactionCreate, callback sent. */
export type AckStageTimes = [raw: number, created: number, written: number];

/**
 * Times each Discord interaction in the bot process: its packet reaching discord.js, its
 * interactionCreate, and its callback request's headers written to the socket (undici's
 * `undici:client:sendHeaders` diagnostics channel, which every undici copy in the process
 * publishes to). The last tells the bot's part of an ack from the fake's reading of it.
 */
export function recordAckStages(client: Client): { stages: Map<string, AckStageTimes>; stop(): void } {
  const stages = new Map<string, AckStageTimes>();
  const entry = (id: string) => {
    const e = stages.get(id) ?? [Number.NaN, Number.NaN, Number.NaN];
    stages.set(id, e);
    return e;
  };
  client.on(Events.Raw, (packet: { t?: string; d?: { id?: string } }) => {
    if (packet.t === 'INTERACTION_CREATE' && packet.d?.id) entry(packet.d.id)[0] = Date.now();
  });
  client.on(Events.InteractionCreate, (i) => {
    entry(i.id)[1] = Date.now();
  });
  const onHeaders = (message: unknown) => {
    const path = (message as { request?: { path?: string } }).request?.path ?? '';
    const m = /\/interactions\/(\d+)\/[^/]+\/callback/.exec(path);
    if (m) {
      const e = entry(m[1]!);
      if (Number.isNaN(e[2])) e[2] = Date.now();
    }
  };
  subscribe('undici:client:sendHeaders', onHeaders);
  return { stages, stop: () => unsubscribe('undici:client:sendHeaders', onHeaders) };
}
