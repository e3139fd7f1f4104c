// The slots acked interactions work in: bounded, first come first served, freed by release.
import { describe, expect, it } from 'vitest';
import { AckFirst } from '../../../src/bots/core/ack-first.js';
import { WorkSlots } from '../../../src/bots/discord/work-slots.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('WorkSlots', () => {
  it('admits up to its concurrency, then one in line per release, in arrival order', async () => {
    const slots = new WorkSlots<object>(2);
    const [a, b, c, d] = [{}, {}, {}, {}];
    const admitted: string[] = [];
    const admit = (key: object, name: string) => slots.admit(key).then(() => admitted.push(name));
    void admit(a, 'a');
    void admit(b, 'b');
    void admit(c, 'c');
    void admit(d, 'd');
    await tick();
    expect(admitted).toEqual(['a', 'b']);
    expect([slots.active, slots.waiting]).toEqual([2, 2]);
    // Asking again while holding a slot takes no second one.
    await slots.admit(a);
    expect(slots.active).toBe(2);
    slots.release(b);
    await tick();
    expect(admitted).toEqual(['a', 'b', 'c']);
    slots.release({}); // holds nothing: no effect
    slots.release(b); // released already
    await tick();
    expect(admitted).toEqual(['a', 'b', 'c']);
    slots.release(a);
    await tick();
    expect(admitted).toEqual(['a', 'b', 'c', 'd']);
  });

  it('frees a slot whose lease ran out (a handler waiting on a worker), for the next in line', async () => {
    const slots = new WorkSlots<object>(1, 30);
    const waiter = {};
    await slots.admit(waiter);
    const started = performance.now();
    await slots.admit({});
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    slots.release(waiter); // too late to matter; frees nothing it does not hold
    expect(slots.active).toBe(1);
    expect(() => new WorkSlots(1, 0)).toThrow(RangeError);
  });

  it('drops the waiting ones on clear', async () => {
    const slots = new WorkSlots<object>(1);
    const first = {};
    await slots.admit(first);
    let late = false;
    void slots.admit({}).then(() => {
      late = true;
    });
    slots.clear();
    slots.release(first);
    await tick();
    expect(late).toBe(false);
    expect(() => new WorkSlots(0)).toThrow(RangeError);
  });

  it('lets acked work into a slot only once the other arrivals are acked (admit) or done (release)', async () => {
    const gate = new AckFirst(60_000);
    const slots = new WorkSlots<object>(4, 1000, gate);
    const [a, b, c] = [{}, {}, {}];
    for (const k of [a, b, c]) gate.arrived(k);
    let admitted = false;
    void slots.admit(a).then(() => {
      admitted = true;
    });
    await tick();
    expect([admitted, slots.active]).toEqual([false, 0]);
    void slots.admit(b); // b acked too: c still awaits its ack
    await tick();
    expect(admitted).toBe(false);
    slots.release(c); // c's handler ended without an ack (refused, or its token ran out)
    await tick();
    expect([admitted, slots.active]).toEqual([true, 2]);
  });
});
