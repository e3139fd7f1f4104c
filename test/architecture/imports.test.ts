// The layering of docs/ARCHITECTURE.md, enforced: `bots -> shared <- worker`, with src/app the only
// place that wires both. Reads every TypeScript source under src and checks each relative module
// specifier it names (static import / export ... from, side-effect imports, dynamic and type-position
// import()). The tokenizer below is small but real: comments, strings, template literals and regex
// literals never pass for imports, so a specifier inside one neither hides nor fakes a dependency.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

type Area = 'app' | 'bots' | 'shared' | 'worker';

/** What each area must never import. src/app is the composition root: it may import anything. */
const forbidden: Record<Area, readonly Area[]> = {
  bots: ['worker', 'app'],
  shared: ['worker', 'app', 'bots'],
  worker: ['bots', 'app'],
  app: [],
};

interface Token {
  readonly kind: 'name' | 'string' | 'template' | 'number' | 'punct';
  readonly value: string;
}

// After these a `/` starts a regex literal; after any other name it divides.
const beforeRegex = new Set([
  'return',
  'typeof',
  'case',
  'do',
  'else',
  'in',
  'instanceof',
  'new',
  'throw',
  'void',
  'delete',
  'yield',
  'await',
  'of',
]);

/** Tokens of a TypeScript source, comments dropped; a template with substitutions has value `null`. */
function tokenize(src: string): Token[] {
  const out: Token[] = [];
  // What each open `{` (or `${` of a template) closes back into.
  const braces: ('code' | 'template')[] = [];
  let i = 0;
  const regexAllowed = (): boolean => {
    const prev = out.at(-1);
    if (!prev) return true;
    if (prev.kind === 'name') return beforeRegex.has(prev.value);
    if (prev.kind !== 'punct') return false;
    return prev.value !== ')' && prev.value !== ']' && prev.value !== '}';
  };
  /** Reads template characters from i to the closing backtick or a `${`; returns the raw text. */
  const templateChunk = (): { text: string; open: boolean } => {
    let text = '';
    while (i < src.length) {
      const c = src[i]!;
      if (c === '\\') {
        text += src.slice(i, i + 2);
        i += 2;
      } else if (c === '`') {
        i++;
        return { text, open: false };
      } else if (c === '$' && src[i + 1] === '{') {
        i += 2;
        braces.push('template');
        return { text, open: true };
      } else {
        text += c;
        i++;
      }
    }
    return { text, open: false };
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '/' && src[i + 1] === '/') {
      const end = src.indexOf('\n', i);
      i = end < 0 ? src.length : end;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      i = end < 0 ? src.length : end + 2;
    } else if (c === '"' || c === "'") {
      let value = '';
      i++;
      while (i < src.length && src[i] !== c) {
        if (src[i] === '\\') i++;
        value += src[i] ?? '';
        i++;
      }
      i++;
      out.push({ kind: 'string', value });
    } else if (c === '`') {
      i++;
      const chunk = templateChunk();
      out.push({ kind: 'template', value: chunk.open ? '\0computed' : chunk.text });
    } else if (c === '}' && braces.at(-1) === 'template') {
      braces.pop();
      i++;
      if (templateChunk().open) continue; // another substitution; the template token is already out
    } else if (c === '/' && regexAllowed()) {
      let inClass = false;
      i++;
      while (i < src.length && (inClass || src[i] !== '/') && src[i] !== '\n') {
        if (src[i] === '\\') i++;
        else if (src[i] === '[') inClass = true;
        else if (src[i] === ']') inClass = false;
        i++;
      }
      i++;
      while (i < src.length && /[a-z]/i.test(src[i]!)) i++;
      out.push({ kind: 'number', value: 'regex' }); // an operand, like a number
    } else if (/[A-Za-z_$]/.test(c)) {
      const m = /^[\w$]+/.exec(src.slice(i, i + 200))!;
      out.push({ kind: 'name', value: m[0] });
      i += m[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[\w.]+/.exec(src.slice(i, i + 200))!;
      out.push({ kind: 'number', value: m[0] });
      i += m[0].length;
    } else {
      if (c === '{') braces.push('code');
      else if (c === '}') braces.pop();
      out.push({ kind: 'punct', value: c });
      i++;
    }
  }
  return out;
}

// What may stand between `import` / `export` and `from` in a declaration.
const clausePunct = new Set(['{', '}', ',', '*']);

/** The module specifiers a TypeScript source names; a computed dynamic import() reads `<computed>`. */
function importSpecifiers(src: string): string[] {
  const t = tokenize(src);
  const specs: string[] = [];
  const literal = (tok: Token | undefined): string | undefined =>
    tok?.kind === 'string' || (tok?.kind === 'template' && !tok.value.startsWith('\0'))
      ? tok.value
      : undefined;
  for (let k = 0; k < t.length; k++) {
    const tok = t[k]!;
    if (tok.kind !== 'name' || (tok.value !== 'import' && tok.value !== 'export')) continue;
    if (t[k - 1]?.value === '.') continue; // a member named import or export
    const next = t[k + 1];
    if (tok.value === 'import' && next?.kind === 'string') {
      specs.push(next.value);
    } else if (tok.value === 'import' && next?.value === '(') {
      specs.push(literal(t[k + 2]) ?? '<computed>');
    } else {
      for (let j = k + 1; j < t.length; j++) {
        const cur = t[j]!;
        if (cur.kind === 'name' && cur.value === 'from' && t[j + 1]?.kind === 'string') {
          specs.push(t[j + 1]!.value);
          break;
        }
        if (cur.kind !== 'name' && !(cur.kind === 'punct' && clausePunct.has(cur.value))) break;
      }
    }
  }
  return specs;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.[cm]?tsx?$/.test(f))
    .map((f) => join(dir, f))
    .sort();
}

function areaOf(path: string): Area | undefined {
  const [top, area] = relative(root, path).split(sep);
  return top === 'src' && (area === 'app' || area === 'bots' || area === 'shared' || area === 'worker')
    ? area
    : undefined;
}

describe('import boundaries', () => {
  it('the scanner finds every form of import, and nothing in comments, strings or regexes', () => {
    const src = `
      import a from './a.js';
      import type { B } from "./b.js";
      import {
        c,
        type C,
        from,
      } from './c.js';
      import * as d from './d.js';
      import './e.js';
      export { f } from './f.js';
      export type { G } from './g.js';
      export * from './h.js';
      export * as i from './i.js';
      const j = await import('./j.js');
      const k = await import(\`./k.js\`);
      type L = import('./l.js').L;
      const m = await import(\`./\${name}.js\`);
      // import n from './comment.js';
      /* export * from './block-comment.js'; */
      const s = "import o from './string.js'";
      const tpl = \`export * from './template.js' \${x} import './template-2.js'\`;
      const re = /import p from '.\\/regex.js'/;
      const ratio = width / height / 2; import q from './after-division.js';
      export const r = 1;
      obj.import('./member.js');
      export default from;
    `;
    expect(importSpecifiers(src)).toEqual([
      './a.js',
      './b.js',
      './c.js',
      './d.js',
      './e.js',
      './f.js',
      './g.js',
      './h.js',
      './i.js',
      './j.js',
      './k.js',
      './l.js',
      '<computed>',
      './after-division.js',
    ]);
  });

  it('bots and shared never import worker or app; worker never bots or app; shared never bots', () => {
    const files = sourceFiles(join(root, 'src'));
    expect(files.length).toBeGreaterThan(50);
    const violations: string[] = [];
    const computed: string[] = [];
    let checked = 0;
    for (const file of files) {
      const from = areaOf(file);
      expect(from, `${relative(root, file)} is outside src/{app,bots,shared,worker}`).toBeDefined();
      for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
        // src/app may import anything, so only the layered areas must name what they import.
        if (spec === '<computed>' && from !== 'app') computed.push(relative(root, file));
        if (!spec.startsWith('.')) continue; // packages and node: builtins
        checked++;
        const target = resolve(dirname(file), spec);
        const to = areaOf(target);
        if (to !== undefined && forbidden[from!].includes(to)) {
          violations.push(`${relative(root, file)} imports '${spec}' (src/${to})`);
        }
      }
    }
    // The scan saw the tree's imports (a broken scanner would pass everything).
    expect(checked).toBeGreaterThan(200);
    expect(violations, `layering broken:\n  ${violations.join('\n  ')}`).toEqual([]);
    // A computed specifier could name anything: keep them out of the layered code.
    expect(computed, `dynamic import() with a computed specifier in:\n  ${computed.join('\n  ')}`).toEqual(
      [],
    );
  });
});
