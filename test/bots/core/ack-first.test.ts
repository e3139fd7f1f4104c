// The process's acks-first gate: work after an ack waits while another interaction awaits its ack,
// for at most maxWaitMs; every way out of an interaction (acked, refused, done) opens it.
import { describe, expect, it } from 'vitest';
import { AckFirst } from '../../../src/bots/core/ack-first.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Whether `p` has settled by the next turn of the event loop. */
async function settledYet(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await tick();
  return done;
}

describe('AckFirst', () => {
  it('lets work go at once when no interaction awaits its ack', async () => {
    const gate = new AckFirst(60_000);
    expect(await settledYet(gate.settled())).toBe(true);
    const a = {};
    gate.arrived(a);
    gate.acked(a);
    expect(await settledYet(gate.settled())).toBe(true);
  });

  it('holds work until every arrived interaction is acked, then lets all of it go', async () => {
    const gate = new AckFirst(60_000);
    const [a, b] = [{}, {}];
    gate.arrived(a);
    gate.arrived(b);
    const first = gate.settled();
    const second = gate.settled();
    expect(await settledYet(first)).toBe(false);
    expect(gate.waiting).toBe(2);
    gate.acked(a);
    expect(await settledYet(first)).toBe(false);
    gate.acked({}); // never arrived: no effect
    gate.acked(a); // twice: no effect
    expect(await settledYet(second)).toBe(false);
    expect(gate.unacked).toBe(1);
    gate.acked(b);
    expect(await settledYet(first)).toBe(true);
    expect(await settledYet(second)).toBe(true);
    expect([gate.unacked, gate.waiting]).toEqual([0, 0]);
  });

  it('lets held work go a few a turn, oldest first, and stops when another interaction arrives', async () => {
    const gate = new AckFirst(60_000, 2);
    const a = {};
    gate.arrived(a);
    const order: number[] = [];
    const held = [1, 2, 3, 4, 5].map((n) => gate.settled().then(() => order.push(n)));
    gate.acked(a);
    await Promise.resolve();
    // The first two at once, in the ack's own turn; the rest wait for the next turns.
    expect(order).toEqual([1, 2]);
    expect(gate.waiting).toBe(3);
    // A packet read meanwhile: its interaction arrives before the next turn, and holds the rest.
    const b = {};
    gate.arrived(b);
    await tick();
    await tick();
    expect(order).toEqual([1, 2]);
    expect(gate.waiting).toBe(3);
    gate.acked(b);
    await Promise.resolve();
    expect(order).toEqual([1, 2, 3, 4]);
    await tick();
    await Promise.all(held);
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect([gate.unacked, gate.waiting]).toEqual([0, 0]);
    expect(() => new AckFirst(1000, 0)).toThrow(RangeError);
  });

  it('holds work no longer than maxWaitMs when an ack never comes', async () => {
    const gate = new AckFirst(40);
    gate.arrived({});
    const started = performance.now();
    await gate.settled();
    expect(performance.now() - started).toBeGreaterThanOrEqual(35);
    expect(gate.waiting).toBe(0);
  });

  it('never holds with maxWaitMs 0, and stops holding once closed', async () => {
    const off = new AckFirst(0);
    off.arrived({});
    expect(off.unacked).toBe(0);
    expect(await settledYet(off.settled())).toBe(true);

    const gate = new AckFirst(60_000);
    gate.arrived({});
    const waiting = gate.settled();
    gate.close();
    expect(await settledYet(waiting)).toBe(true);
    gate.arrived({});
    expect(await settledYet(gate.settled())).toBe(true);
    expect(() => new AckFirst(-1)).toThrow(RangeError);
  });
});
