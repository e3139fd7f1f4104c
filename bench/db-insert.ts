// Insert cost of the HNSW index in PGlite (`npm run bench -- db-insert`): two in-memory databases,
// one with the index (as a new images table has it since migration 6) and one without, filled one
// row per statement through Database.upsertImage (the embed-image path) in alternating rounds, so
// that load from other processes lands on both alike. Then the time to build the index over the
// plain table, which is what opening an older database of that size would cost.
// Flags: --rows=5000 (per database), --batch=500 (rows per round), --clustered, --dim=512.
import { openDatabase } from '../src/shared/db/index.js';
import { type BenchModule, type BenchResult, mulberry32, percentile, type Row, randn } from './lib.js';

interface Options {
  rows: number;
  batch: number;
  dim: number;
  clustered: boolean;
}

function parseFlags(flags: readonly string[]): Options {
  const o: Options = { rows: 5000, batch: 500, dim: 512, clustered: false };
  for (const raw of flags) {
    const [flag, value] = raw.replace(/^--/, '').split('=');
    const int = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} needs a positive integer`);
      return n;
    };
    if (flag === 'rows') o.rows = int();
    else if (flag === 'batch') o.batch = int();
    else if (flag === 'dim') o.dim = int();
    else if (flag === 'clustered') o.clustered = true;
  }
  return o;
}

const CENTRES = 100;

async function run(flags: readonly string[]): Promise<BenchResult> {
  const o = parseFlags(flags);
  const rand = mulberry32(42);
  const centres = Array.from({ length: CENTRES }, () => randn(rand, o.dim));
  // Clustered: a centre plus noise of 0.6 its scale (cosine ~0.86 to the centre), like the pipeline bench.
  const vector = (i: number): Float32Array => {
    const noise = randn(rand, o.dim, o.clustered ? 0.6 : 1);
    if (!o.clustered) return noise;
    const c = centres[i % CENTRES]!;
    for (let d = 0; d < o.dim; d++) noise[d]! += c[d]!;
    return noise;
  };
  const indexed = await openDatabase({}, { embeddingDim: o.dim });
  const plain = await openDatabase({}, { embeddingDim: o.dim });
  try {
    // Either way round, whatever the migrations did: one with the index, one without.
    await indexed.ensureVectorIndex({ minRows: 0 });
    await plain.driver.exec('DROP INDEX IF EXISTS images_embedding_hnsw');
    const dbs = [
      { name: 'with HNSW index', db: indexed, rates: [] as number[] },
      { name: 'without index', db: plain, rates: [] as number[] },
    ];
    let n = 0;
    for (let round = 0; n < o.rows; round++) {
      const count = Math.min(o.batch, o.rows - n);
      // The same vectors for both, drawn before timing.
      const vectors = Array.from({ length: count }, (_, i) => vector(n + i));
      const order = round % 2 === 0 ? dbs : [...dbs].reverse();
      for (const entry of order) {
        const t0 = performance.now();
        for (const [i, embedding] of vectors.entries()) {
          await entry.db.upsertImage({
            platform: 'web',
            workspace: 'w',
            channel: 'c',
            message: `m${n + i}`,
            file: 'f',
            contentHash: `h${n + i}`,
            embedding,
          });
        }
        entry.rates[round] = count / ((performance.now() - t0) / 1000);
      }
      n += count;
      console.log(
        `  ${n} rows: ${dbs.map((d) => `${d.name} ${d.rates[round]!.toFixed(0)} rows/s`).join(', ')}`,
      );
    }
    const median = (xs: readonly number[]) =>
      percentile(
        [...xs].sort((a, b) => a - b),
        50,
      );
    const ratios = dbs[1]!.rates.map((r, i) => r / dbs[0]!.rates[i]!);
    const rows: Row[] = dbs.map((d) => ({
      name: d.name,
      cells: {
        'median rows/s': Number(median(d.rates).toFixed(0)),
        'ms/row': Number((1000 / median(d.rates)).toFixed(2)),
        'first round rows/s': Number(d.rates[0]!.toFixed(0)),
        'last round rows/s': Number(d.rates[d.rates.length - 1]!.toFixed(0)),
      },
    }));
    const t0 = performance.now();
    await plain.ensureVectorIndex({ minRows: 0 });
    const buildS = (performance.now() - t0) / 1000;
    return {
      tables: [
        {
          title: `Inserting ${o.rows} ${o.clustered ? 'clustered' : 'random'} ${o.dim}-d rows one by one in PGlite (rounds of ${o.batch}, alternating)`,
          rows,
        },
      ],
      notes: [
        `median per-round ratio without/with index: ${median(ratios).toFixed(2)}x`,
        `building the index afterwards over the ${o.rows} rows without it (ensureVectorIndex, VACUUM ANALYZE included): ${buildS.toFixed(1)} s`,
      ],
      details: { options: o, rates: Object.fromEntries(dbs.map((d) => [d.name, d.rates])), buildS },
    };
  } finally {
    await indexed.close();
    await plain.close();
  }
}

export const dbInsertBench: BenchModule = {
  name: 'db-insert',
  description: 'PGlite insert rate with and without the HNSW index, and the build time afterwards',
  run,
};
