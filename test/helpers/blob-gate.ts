// Holding a worker mid-job without painting many steps to make sure it is still running: the
// worker awaits every blob put (each preview, then the results), so a put held here holds its job.
import type { BlobStore, PutOptions } from '../../src/shared/blobs.js';

/**
 * `blobs` with every put after the first preview's held until `until()` resolves (called at each
 * such put; a rejection lets the put go on, and the test's own assertions say what is missing).
 */
export function holdAfterFirstPreview(blobs: BlobStore, until: () => Promise<unknown>): BlobStore {
  let previews = 0;
  return new Proxy(blobs, {
    get(target, property) {
      if (property === 'put') {
        return async (bytes: Uint8Array, options: PutOptions) => {
          if (previews > 0) await until().catch(() => {});
          const key = await target.put(bytes, options);
          if (options.name?.startsWith('preview:')) previews += 1;
          return key;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** A promise and the function that resolves it. */
export function gate(): { opened: Promise<void>; open: () => void } {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}
