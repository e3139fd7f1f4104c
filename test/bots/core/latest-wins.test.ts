import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LatestWins } from '../../../src/bots/core/latest-wins.js';

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('LatestWins', () => {
  it('delivers the first value at once, then only the latest one per interval', async () => {
    const seen: [number, string][] = [];
    const lw = new LatestWins<string>(100, (v) => {
      seen.push([Date.now(), v]);
    });
    lw.push('a');
    await vi.advanceTimersByTimeAsync(10);
    lw.push('b');
    await vi.advanceTimersByTimeAsync(10);
    lw.push('c');
    await vi.advanceTimersByTimeAsync(79);
    expect(seen).toEqual([[0, 'a']]);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual([
      [0, 'a'],
      [100, 'c'],
    ]);
    // Quiet for longer than the interval: the next value goes out immediately.
    await vi.advanceTimersByTimeAsync(500);
    lw.push('d');
    await vi.advanceTimersByTimeAsync(0);
    expect(seen.at(-1)).toEqual([600, 'd']);
  });

  it('never overlaps deliveries; a slow delivery delays the next', async () => {
    const seen: [number, string][] = [];
    let running = 0;
    // Counted, not asserted in the callback: LatestWins catches and logs what a delivery throws.
    let mostAtOnce = 0;
    const lw = new LatestWins<string>(100, async (v) => {
      running++;
      mostAtOnce = Math.max(mostAtOnce, running);
      seen.push([Date.now(), v]);
      await new Promise((r) => setTimeout(r, 250));
      running--;
    });
    lw.push('a');
    await vi.advanceTimersByTimeAsync(50);
    lw.push('b');
    lw.push('c');
    await vi.advanceTimersByTimeAsync(199);
    expect(seen.map((s) => s[1])).toEqual(['a']);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual([
      [0, 'a'],
      [250, 'c'],
    ]);
    const flushed = lw.flush();
    await vi.advanceTimersByTimeAsync(250);
    await flushed;
    expect(running).toBe(0);
    expect(mostAtOnce).toBe(1);
  });

  it('flush waits for the pending value; cancel drops it', async () => {
    const seen: string[] = [];
    const lw = new LatestWins<string>(100, (v) => {
      seen.push(v);
    });
    lw.push('a');
    lw.push('b');
    let flushed = false;
    void lw.flush().then(() => {
      flushed = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(flushed).toBe(false);
    await vi.advanceTimersByTimeAsync(100);
    expect(flushed).toBe(true);
    expect(seen).toEqual(['a', 'b']);
    lw.push('c');
    lw.cancel();
    await vi.advanceTimersByTimeAsync(1000);
    expect(seen).toEqual(['a', 'b']);
  });

  it('keeps going when a delivery throws', async () => {
    const seen: string[] = [];
    const lw = new LatestWins<string>(10, (v) => {
      seen.push(v);
      if (v === 'a') throw new Error('chat API down');
    });
    lw.push('a');
    await vi.advanceTimersByTimeAsync(0);
    lw.push('b');
    await vi.advanceTimersByTimeAsync(10);
    expect(seen).toEqual(['a', 'b']);
  });
});
