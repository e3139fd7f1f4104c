// docker-compose.yml and the Dockerfile: `docker-compose config -q` (Debian's docker-compose 1.29
// validates a file without a Docker engine) when it is installed, which CI must ensure; and always a
// check of what the deployment promises (AOF + noeviction, pgvector, a GPU worker built for CUDA,
// env vars our config accepts) through a small parser of the YAML subset the file is written in.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { assertPlaygroundExposure } from '../../src/bots/web/auth.js';
import { loadConfig } from '../../src/shared/config.js';
import { Metrics } from '../../src/shared/metrics.js';
import { Health, startMetricsServer } from '../../src/shared/metrics-server.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const COMPOSE = join(ROOT, 'docker-compose.yml');
const run = promisify(execFile);

function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, command))) return join(dir, command);
  }
  return undefined;
}

const dockerCompose = which('docker-compose');
const inCi = process.env.CI === 'true' || process.env.CI === '1';

// --- a parser for the YAML subset compose files here use -------------------------------------------
// Block mappings and sequences by indentation, `key: value`, `- item`, flow sequences of scalars
// (`["a", "b"]`), quoted and plain scalars, comments. Anchors, multi-line strings and flow mappings
// are refused, so the file cannot drift into syntax this check would misread.

type Yaml = string | Yaml[] | { [key: string]: Yaml };

interface Line {
  indent: number;
  text: string;
  n: number;
}

function scalar(raw: string, n: number): Yaml {
  const v = raw.trim();
  if (v.startsWith('[')) {
    if (!v.endsWith(']')) throw new Error(`line ${n}: unterminated flow sequence`);
    const inner = v.slice(1, -1).trim();
    if (inner === '') return [];
    return splitFlow(inner, n).map((item) => scalar(item, n) as string);
  }
  if (/^[&*!|>{]/.test(v)) throw new Error(`line ${n}: unsupported YAML (${v.slice(0, 10)})`);
  if (v.startsWith('"')) {
    if (!v.endsWith('"') || v.length < 2) throw new Error(`line ${n}: unterminated string`);
    return JSON.parse(v) as string;
  }
  if (v.startsWith("'")) {
    if (!v.endsWith("'") || v.length < 2) throw new Error(`line ${n}: unterminated string`);
    return v.slice(1, -1).replaceAll("''", "'");
  }
  return v;
}

function splitFlow(inner: string, n: number): string[] {
  const items: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (const ch of inner) {
    if (quote) {
      current += ch;
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      current += ch;
    } else if (ch === ',') {
      items.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (quote) throw new Error(`line ${n}: unterminated string in flow sequence`);
  items.push(current);
  return items.map((s) => s.trim());
}

function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === '#' && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i);
    }
  }
  return line;
}

function parseYamlSubset(text: string): Yaml {
  const lines: Line[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.includes('\t')) throw new Error(`line ${i + 1}: tab`);
    const body = stripComment(raw).trimEnd();
    if (body.trim() === '') return;
    lines.push({ indent: body.length - body.trimStart().length, text: body.trim(), n: i + 1 });
  });
  let pos = 0;

  const keyValue = (text: string, n: number): [string, string] => {
    const m = /^("[^"]*"|'[^']*'|[^:'"\s][^:]*?):(\s+(.*))?$/.exec(text);
    if (!m) throw new Error(`line ${n}: expected "key: value", got "${text}"`);
    return [scalar(m[1]!, n) as string, m[3] ?? ''];
  };

  const block = (indent: number): Yaml => {
    const first = lines[pos]!;
    if (first.indent !== indent) throw new Error(`line ${first.n}: bad indentation`);
    // A flow sequence too long for its key's line continues on the next (formatters do this).
    if (first.text.startsWith('[')) {
      pos++;
      return scalar(first.text, first.n);
    }
    if (first.text.startsWith('- ') || first.text === '-') {
      const seq: Yaml[] = [];
      while (pos < lines.length && lines[pos]!.indent === indent && lines[pos]!.text.startsWith('-')) {
        const line = lines[pos]!;
        const rest = line.text.slice(1).trim();
        pos++;
        if (rest === '') {
          seq.push(block(lines[pos]!.indent));
        } else if (/^[^"'[][^:]*:(\s|$)/.test(rest)) {
          // "- key: value" opens a mapping whose further keys sit two columns deeper.
          const [k, v] = keyValue(rest, line.n);
          const map: { [key: string]: Yaml } = {};
          map[k] = v === '' ? block(lines[pos]!.indent) : scalar(v, line.n);
          if (pos < lines.length && lines[pos]!.indent === indent + 2) {
            Object.assign(map, block(indent + 2));
          }
          seq.push(map);
        } else {
          seq.push(scalar(rest, line.n));
        }
      }
      return seq;
    }
    const map: { [key: string]: Yaml } = {};
    while (pos < lines.length && lines[pos]!.indent === indent) {
      const line = lines[pos]!;
      if (line.text.startsWith('-')) throw new Error(`line ${line.n}: sequence item inside a mapping`);
      const [k, v] = keyValue(line.text, line.n);
      if (k in map) throw new Error(`line ${line.n}: duplicate key ${k}`);
      pos++;
      if (v !== '') map[k] = scalar(v, line.n);
      else if (pos < lines.length && lines[pos]!.indent > indent) map[k] = block(lines[pos]!.indent);
      else map[k] = '';
    }
    if (pos < lines.length && lines[pos]!.indent > indent) {
      throw new Error(`line ${lines[pos]!.n}: bad indentation`);
    }
    return map;
  };

  const doc = block(0);
  if (pos !== lines.length) throw new Error(`line ${lines[pos]!.n}: unexpected content`);
  return doc;
}

type Obj = { [key: string]: Yaml };
const obj = (v: Yaml | undefined): Obj => {
  if (v === undefined || typeof v === 'string' || Array.isArray(v)) throw new Error('expected a mapping');
  return v;
};
const list = (v: Yaml | undefined): Yaml[] => {
  if (!Array.isArray(v)) throw new Error('expected a sequence');
  return v;
};

/** `${VAR:-default}` as compose interpolates it with VAR unset. */
function interpolate(value: string): string {
  return value.replace(/\$\{([A-Z_]+):-([^}]*)\}/g, (_, _name: string, def: string) => def);
}

describe('parseYamlSubset', () => {
  it('reads mappings, sequences, flow sequences and quoted scalars, and refuses what it does not know', () => {
    const doc = parseYamlSubset(`
a: 1 # comment
b:
  - x
  - "y: z"
  - key: v
    other: w
c: ["p", 'q', r]
c2:
  ["long", "flow"]
d:
  e: "#not a comment"
`);
    expect(doc).toEqual({
      a: '1',
      b: ['x', 'y: z', { key: 'v', other: 'w' }],
      c: ['p', 'q', 'r'],
      c2: ['long', 'flow'],
      d: { e: '#not a comment' },
    });
    expect(() => parseYamlSubset('a: &x 1')).toThrow(/unsupported/);
    expect(() => parseYamlSubset('a: 1\na: 2')).toThrow(/duplicate/);
    expect(() => parseYamlSubset('a:\n  b: 1\n c: 2')).toThrow(/indentation/);
  });
});

describe('docker-compose.yml', () => {
  const text = readFileSync(COMPOSE, 'utf8');
  const doc = obj(parseYamlSubset(text));
  const services = obj(doc.services);

  it('runs redis with AOF and noeviction, and postgres with pgvector', () => {
    expect(Object.keys(services).sort()).toEqual([
      'bot',
      'minio',
      'minio-init',
      'postgres',
      'redis',
      'worker',
    ]);
    const redisCommand = list(obj(services.redis).command).join(' ');
    expect(redisCommand).toMatch(/--appendonly yes/);
    expect(redisCommand).toMatch(/--maxmemory-policy noeviction/);
    // A maxmemory, or the bot's memory guard has nothing to measure against.
    expect(interpolate(redisCommand)).toMatch(/--maxmemory 2gb/);
    expect(obj(services.postgres).image).toBe('pgvector/pgvector:pg16');
  });

  it('builds the worker for CUDA with a GPU reservation and the models volume; the bot for CPU', () => {
    const worker = obj(services.worker);
    expect(obj(obj(worker.build).args).ONNXRUNTIME_NODE_INSTALL).toBe('cuda12');
    const devices = list(obj(obj(obj(worker.deploy).resources).reservations).devices);
    expect(devices).toHaveLength(1);
    expect(obj(devices[0]).driver).toBe('nvidia');
    expect(list(obj(devices[0]).capabilities)).toContain('gpu');
    expect(list(worker.volumes)).toContain('models:/models');
    expect(Object.keys(obj(doc.volumes))).toContain('models');
    expect(obj(obj(obj(services.bot).build).args).ONNXRUNTIME_NODE_INSTALL).toBe('skip');
  });

  it('starts entry points that exist, with environments our config accepts', () => {
    for (const name of ['bot', 'worker']) {
      const service = obj(services[name]);
      const command = list(service.command) as string[];
      const script = command.find((c) => c.endsWith('.ts'));
      expect(script && existsSync(join(ROOT, script))).toBe(true);
      const env = Object.fromEntries(
        Object.entries(obj(service.environment)).map(([k, v]) => [k, interpolate(v as string)]),
      );
      const config = loadConfig(env);
      expect(config.redisUrl).toBe('redis://redis:6379');
      expect(config.databaseUrl).toBe('postgres://vqclip:vqclip@postgres:5432/vqclip');
      if (name === 'worker') {
        expect(config.ortProviders).toEqual(['cuda', 'cpu']);
        expect(config.worker.queues.length).toBeGreaterThan(0);
      } else {
        // Bound to every interface inside the container; the port mapping keeps it on the host's loopback.
        expect(config.host).toBe('0.0.0.0');
        // The playground and Slack's HTTP-mode receiver, both on the host's loopback only.
        expect(list(service.ports).map((p) => interpolate(p as string))).toEqual([
          '127.0.0.1:3000:3000',
          '127.0.0.1:3001:3001',
        ]);
        // No chat token is set by default: the adapters stay off until the operator sets one.
        expect(config.discord.token).toBeUndefined();
        expect(config.slack.botToken).toBeUndefined();
        expect(config.slack.port).toBe(3001);
      }
    }
  });

  it('checks bot and worker on their own /healthz, with a probe that works, and wires the password', {
    timeout: 30_000,
  }, async () => {
    const health = { ok: true };
    const metrics = new Metrics({ processMetrics: false });
    const server = await startMetricsServer({
      metrics,
      health: new Health().set('probe', () => {
        if (!health.ok) throw new Error('down');
      }),
      port: 0,
      host: '127.0.0.1',
      portVariable: 'TEST_PORT',
    });
    try {
      for (const [name, variable] of [
        ['bot', 'port'],
        ['worker', 'workerPort'],
      ] as const) {
        const service = obj(services[name]);
        const env = Object.fromEntries(
          Object.entries(obj(service.environment)).map(([k, v]) => [k, interpolate(v as string)]),
        );
        const config = loadConfig(env);
        const port = config.metrics[variable];
        expect(port, name).toBeGreaterThan(0);
        const test = list(obj(service.healthcheck).test) as string[];
        expect(test.slice(0, 3), name).toEqual(['CMD', 'node', '-e']);
        const script = test[3] ?? '';
        expect(script, name).toContain(`http://127.0.0.1:${port}/healthz`);
        // The probe itself, against a real listener: exit 0 when healthy, 1 when not or unreachable.
        const probe = (url: string) =>
          run(process.execPath, ['-e', script.replace(`http://127.0.0.1:${port}`, url)]).then(
            () => 0,
            (e: { code?: number }) => e.code ?? -1,
          );
        health.ok = true;
        expect(await probe(server.url), name).toBe(0);
        health.ok = false;
        expect(await probe(server.url), name).toBe(1);
        expect(await probe('http://127.0.0.1:1'), name).toBe(1);
      }
    } finally {
      await server.close();
    }
    // The bot binds 0.0.0.0 in its container: without PLAYGROUND_PASSWORD it must refuse to start.
    const botEnv = obj(obj(services.bot).environment);
    expect(botEnv.PLAYGROUND_PASSWORD).toMatch(/^\$\{PLAYGROUND_PASSWORD:-\}$/);
    const withPassword = (value: string) =>
      Object.fromEntries(
        Object.entries(botEnv).map(([k, v]) => [
          k,
          (v as string).replace(/\$\{PLAYGROUND_PASSWORD:-\}/, value).replace(/\$\{(\w+):-([^}]*)\}/g, '$2'),
        ]),
      );
    const open = loadConfig(withPassword(''));
    expect(() => assertPlaygroundExposure(open.host, open.playgroundPassword)).toThrow(/PLAYGROUND_PASSWORD/);
    const guarded = loadConfig(withPassword('a password of some length'));
    expect(() => assertPlaygroundExposure(guarded.host, guarded.playgroundPassword)).not.toThrow();
  });

  it('has an optional MinIO (profile minio) that bot and worker reach with the same keys', () => {
    for (const name of ['minio', 'minio-init']) expect(list(obj(services[name]).profiles)).toEqual(['minio']);
    for (const name of ['bot', 'worker', 'redis', 'postgres'])
      expect(obj(services[name]).profiles).toBeUndefined();
    const minio = obj(services.minio);
    expect(list(minio.ports).map((p) => interpolate(p as string))).toEqual([
      '127.0.0.1:9000:9000',
      '127.0.0.1:9001:9001',
    ]);
    const minioEnv = obj(minio.environment);
    // MinIO's root user is the key pair bot and worker sign with.
    expect(minioEnv.MINIO_ROOT_USER).toMatch(/^\$\{AWS_ACCESS_KEY_ID:-\}$/);
    expect(minioEnv.MINIO_ROOT_PASSWORD).toMatch(/^\$\{AWS_SECRET_ACCESS_KEY:-\}$/);
    expect(list(obj(services['minio-init']).command).join(' ')).toMatch(
      /mc mb --ignore-existing local\/vqclip/,
    );
    // What the compose file's header tells an operator to put in .env, through each service's environment.
    const dotEnv: Record<string, string> = {
      BLOB_STORE_URL: 's3://vqclip/blobs',
      AWS_ENDPOINT_URL: 'http://minio:9000',
      AWS_ACCESS_KEY_ID: 'vqclip',
      AWS_SECRET_ACCESS_KEY: 'a-long-secret',
    };
    const withEnv = (v: string) =>
      v.replace(/\$\{([A-Z_]+):-([^}]*)\}/g, (_, name: string, def: string) => dotEnv[name] ?? def);
    for (const name of ['bot', 'worker']) {
      const service = obj(services[name]);
      const env = (values: (v: string) => string) =>
        Object.fromEntries(
          Object.entries(obj(service.environment)).map(([k, v]) => [k, values(v as string)]),
        );
      // Without .env: blobs in Redis.
      expect(loadConfig(env(interpolate)).blobs.s3).toBeUndefined();
      expect(loadConfig(env(withEnv)).blobs.s3).toEqual({
        bucket: 'vqclip',
        keyPrefix: 'blobs',
        region: 'us-east-1',
        endpoint: 'http://minio:9000',
        forcePathStyle: true,
        accessKeyId: 'vqclip',
        secretAccessKey: 'a-long-secret',
        sweepIntervalSeconds: 600,
        presignedUrls: false,
      });
    }
    expect(withEnv(minioEnv.MINIO_ROOT_USER as string)).toBe('vqclip');
  });

  it('the Dockerfile installs onnxruntime-node as the build argument says', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20-bookworm-slim$/m);
    expect(dockerfile).toMatch(/^ARG ONNXRUNTIME_NODE_INSTALL=skip$/m);
    expect(dockerfile).toMatch(/ONNXRUNTIME_NODE_INSTALL="\$ONNXRUNTIME_NODE_INSTALL" npm ci/);
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', 'data', 'models', '.git']) expect(ignore).toContain(entry);
  });

  // CI installs docker-compose (.ci/run); there its absence is a failure. Elsewhere the checks above
  // still run, and this test says it was skipped.
  if (!dockerCompose && inCi) {
    it('docker-compose is installed in CI', () => {
      expect.fail(
        'docker-compose is not on PATH: .ci/run must install it (apt-get install -y docker-compose)',
      );
    });
  }

  it.skipIf(!dockerCompose)('passes `docker-compose config`, which refuses a broken copy', async () => {
    const env = { ...process.env, POSTGRES_PASSWORD: '' };
    await expect(run(dockerCompose!, ['-f', COMPOSE, 'config', '-q'], { env })).resolves.toBeDefined();
    const { stdout } = await run(dockerCompose!, ['-f', COMPOSE, 'config'], { env });
    // The normalized file has the reservation and the AOF flags as compose understood them.
    expect(stdout).toMatch(/driver: nvidia/);
    expect(stdout).toMatch(/- noeviction/);

    // The validator is not a rubber stamp: a misspelt key fails it.
    const dir = await mkdtemp(join(tmpdir(), 'vqclip-compose-'));
    try {
      const broken = join(dir, 'docker-compose.yml');
      await writeFile(
        broken,
        text.replace('    image: pgvector/pgvector:pg16', '    imagee: pgvector/pgvector:pg16'),
      );
      await expect(run(dockerCompose!, ['-f', broken, 'config', '-q'], { env })).rejects.toThrow(/imagee/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
