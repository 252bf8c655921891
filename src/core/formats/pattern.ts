/**
 * PEFT's rank_pattern / alpha_pattern matching without backtracking.
 *
 * PEFT (`get_pattern_key`) picks the first key for which `re.match(rf"(.*\.)?({key})$", name)`
 * succeeds. JavaScript's RegExp backtracks, so a key such as `(a+)+b` or `(x|x)*y` takes
 * exponential time on a long module name and would hang every open of the adapter. Why our own
 * code: there is no maintained pure-JS linear-time regex engine among our dependencies (re2 is a
 * native addon), and PEFT keys use a small subset of the syntax. This is a Thompson NFA simulated
 * state-set by state-set (Pike VM): time O(|name| × states), states ≤ MAX_NFA_STATES, for any key.
 *
 * Supported: literals, `.`, escapes (\d \w \s \D \W \S \b \B and escaped punctuation), classes
 * `[a-z_]` / `[^...]`, groups `(...)`, `(?:...)`, `(?P<n>...)`, `(?<n>...)`, alternation, `* + ?`,
 * `{n}`, `{n,}`, `{n,m}` (lazy forms match the same names), anchors `^ $`. Not supported (the key is
 * then matched literally as a dotted suffix, and the caller says so): backreferences, lookaround,
 * inline flags.
 */

export const MAX_PATTERN_LENGTH = 1024;
export const MAX_NFA_STATES = 20_000;

type Test = (c: number) => boolean;
type Node =
  | { t: 'char'; test: Test }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; items: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'assert'; kind: '^' | '$' | 'b' | 'B' };

export class UnsupportedPattern extends Error {}

const isDigit: Test = (c) => c >= 48 && c <= 57;
const isWord: Test = (c) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c > 127;
const isSpace: Test = (c) => c === 32 || (c >= 9 && c <= 13);

function parse(src: string): Node {
  let i = 0;
  const peek = (): string => src[i];
  const bad = (why: string): never => { throw new UnsupportedPattern(`${why} at ${i}`); };
  const escapeTest = (ch: string, inClass: boolean): Test | 'b' | 'B' => {
    switch (ch) {
      case 'd': return isDigit;
      case 'D': return (c) => !isDigit(c);
      case 'w': return isWord;
      case 'W': return (c) => !isWord(c);
      case 's': return isSpace;
      case 'S': return (c) => !isSpace(c);
      case 'n': return (c) => c === 10;
      case 't': return (c) => c === 9;
      case 'r': return (c) => c === 13;
      case 'b': return inClass ? (c) => c === 8 : 'b';
      case 'B': if (!inClass) return 'B'; break;
      default: break;
    }
    if (/[0-9A-Za-z]/.test(ch)) bad(`escape \\${ch}`);
    const code = ch.charCodeAt(0);
    return (c) => c === code;
  };
  const parseClass = (): Test => {
    i++; // [
    let neg = false;
    if (peek() === '^') { neg = true; i++; }
    const tests: Test[] = [];
    let first = true;
    while (i < src.length && (peek() !== ']' || first)) {
      first = false;
      let lo: number;
      if (peek() === '\\') {
        i++;
        const e = escapeTest(src[i++] ?? bad('dangling escape'), true) as Test;
        if (/[dDwWsS]/.test(src[i - 1])) { tests.push(e); continue; }
        lo = src.charCodeAt(i - 1);
        if (src[i - 1] === 'n') lo = 10; else if (src[i - 1] === 't') lo = 9; else if (src[i - 1] === 'r') lo = 13;
      } else lo = src.charCodeAt(i++);
      if (peek() === '-' && src[i + 1] !== undefined && src[i + 1] !== ']') {
        i++;
        let hi: number;
        if (peek() === '\\') { i++; hi = src.charCodeAt(i++); } else hi = src.charCodeAt(i++);
        if (hi < lo) bad('bad range');
        tests.push((c) => c >= lo && c <= hi);
      } else {
        const v = lo;
        tests.push((c) => c === v);
      }
    }
    if (peek() !== ']') bad('unterminated class');
    i++;
    return neg ? (c) => !tests.some((t) => t(c)) : (c) => tests.some((t) => t(c));
  };
  const parseAtom = (): Node => {
    const ch = peek();
    if (ch === '(') {
      i++;
      if (peek() === '?') {
        if (src.startsWith('?:', i)) i += 2;
        else if (src.startsWith('?P<', i) || (src.startsWith('?<', i) && src[i + 2] !== '=' && src[i + 2] !== '!')) {
          const end = src.indexOf('>', i);
          if (end < 0) bad('unterminated group name');
          i = end + 1;
        } else bad('lookaround or inline flag');
      }
      const n = parseAlt();
      if (peek() !== ')') bad('missing )');
      i++;
      return n;
    }
    if (ch === '[') return { t: 'char', test: parseClass() };
    if (ch === '.') { i++; return { t: 'char', test: (c) => c !== 10 }; }
    if (ch === '^' || ch === '$') { i++; return { t: 'assert', kind: ch }; }
    if (ch === '\\') {
      i++;
      const e = src[i++];
      if (e === undefined) bad('dangling escape');
      const t = escapeTest(e, false);
      return t === 'b' || t === 'B' ? { t: 'assert', kind: t } : { t: 'char', test: t };
    }
    if (ch === '*' || ch === '+' || ch === '?' || ch === ')' || ch === '|') bad(`unexpected ${ch}`);
    i++;
    const code = ch.charCodeAt(0);
    return { t: 'char', test: (c) => c === code };
  };
  const parseRep = (): Node => {
    let n = parseAtom();
    for (;;) {
      const ch = peek();
      let min: number, max: number;
      if (ch === '*') { min = 0; max = Infinity; i++; }
      else if (ch === '+') { min = 1; max = Infinity; i++; }
      else if (ch === '?') { min = 0; max = 1; i++; }
      else if (ch === '{' && /^\{\d+(,\d*)?\}/.test(src.slice(i, i + 24))) {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(i, i + 24))!;
        i += m[0].length;
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
        if (max < min || min > 1000 || (max !== Infinity && max > 1000)) bad('repeat count');
      } else return n;
      if (peek() === '?' || peek() === '+') i++; // lazy / possessive: same set of matched names
      if (n.t === 'assert') bad('quantified anchor');
      n = { t: 'rep', node: n, min, max };
    }
  };
  const parseCat = (): Node => {
    const items: Node[] = [];
    while (i < src.length && peek() !== '|' && peek() !== ')') items.push(parseRep());
    return items.length === 1 ? items[0] : { t: 'cat', items };
  };
  const parseAlt = (): Node => {
    const items = [parseCat()];
    while (peek() === '|') { i++; items.push(parseCat()); }
    return items.length === 1 ? items[0] : { t: 'alt', items };
  };
  const n = parseAlt();
  if (i !== src.length) bad('unbalanced )');
  return n;
}

interface State { test?: Test; assert?: '^' | '$' | 'b' | 'B'; outs: number[]; match?: boolean }

/** A compiled pattern: `test(s)` is true when the whole of `s` matches. */
export class LinearRegex {
  private readonly states: State[] = [];
  private readonly start: number;
  constructor(pattern: string) {
    if (pattern.length > MAX_PATTERN_LENGTH) throw new UnsupportedPattern('pattern too long');
    const ast = parse(pattern);
    const matchState = this.add({ outs: [], match: true });
    this.start = this.compile(ast, matchState);
  }
  private add(s: State): number {
    if (this.states.length >= MAX_NFA_STATES) throw new UnsupportedPattern(`more than ${MAX_NFA_STATES} NFA states`);
    this.states.push(s);
    return this.states.length - 1;
  }
  private compile(n: Node, next: number): number {
    switch (n.t) {
      case 'char': return this.add({ test: n.test, outs: [next] });
      case 'assert': return this.add({ assert: n.kind, outs: [next] });
      case 'cat': {
        let cur = next;
        for (let k = n.items.length - 1; k >= 0; k--) cur = this.compile(n.items[k], cur);
        return cur;
      }
      case 'alt': return this.add({ outs: n.items.map((x) => this.compile(x, next)) });
      case 'rep': {
        let cur = next;
        if (n.max === Infinity) {
          const loop = this.add({ outs: [] });
          this.states[loop].outs = [this.compile(n.node, loop), next];
          cur = loop;
        } else {
          for (let k = n.min; k < n.max; k++) cur = this.add({ outs: [this.compile(n.node, cur), cur] });
        }
        for (let k = 0; k < n.min; k++) cur = this.compile(n.node, cur);
        return cur;
      }
    }
  }
  /** Full-string match, in O(|s| × states) time. */
  test(s: string): boolean {
    const ns = this.states.length;
    const mark = new Int32Array(ns).fill(-1);
    let cur: number[] = [];
    let nxt: number[] = [];
    const stack: number[] = [];
    const wordAt = (p: number): boolean => p >= 0 && p < s.length && isWord(s.charCodeAt(p));
    const closure = (from: number, pos: number, into: number[], gen: number): boolean => {
      stack.push(from);
      let matched = false;
      while (stack.length) {
        const k = stack.pop()!;
        if (mark[k] === gen) continue;
        mark[k] = gen;
        const st = this.states[k];
        if (st.match) { if (pos === s.length) matched = true; continue; }
        if (st.test) { into.push(k); continue; }
        if (st.assert) {
          const a = st.assert;
          const boundary = wordAt(pos - 1) !== wordAt(pos);
          const ok = a === '^' ? pos === 0 : a === '$' ? pos === s.length || (pos === s.length - 1 && s.charCodeAt(pos) === 10) : a === 'b' ? boundary : !boundary;
          if (!ok) continue;
        }
        for (let o = st.outs.length - 1; o >= 0; o--) stack.push(st.outs[o]);
      }
      return matched;
    };
    let gen = 0;
    let matched = closure(this.start, 0, cur, gen);
    for (let pos = 0; pos < s.length; pos++) {
      const c = s.charCodeAt(pos);
      gen++;
      nxt.length = 0;
      matched = false;
      for (const k of cur) {
        const st = this.states[k];
        if (st.test!(c) && closure(st.outs[0], pos + 1, nxt, gen)) matched = true;
      }
      [cur, nxt] = [nxt, cur];
      if (cur.length === 0 && !matched) return false;
    }
    return matched;
  }
}

const cache = new Map<string, LinearRegex | UnsupportedPattern>();

/**
 * PEFT key semantics: true when `re.match(rf"(.*\.)?({key})$", name)` would succeed. Keys the
 * linear engine cannot express are compared literally (name equals the key or ends with ".key");
 * `onUnsupported` is told on every such call (callers de-duplicate).
 */
export function peftKeyMatches(key: string, name: string, onUnsupported?: (key: string, why: string) => void): boolean {
  let re = cache.get(key);
  if (!re) {
    try {
      re = new LinearRegex(`^(?:.*\\.)?(?:${key})$`);
    } catch (e) {
      re = e instanceof UnsupportedPattern ? e : new UnsupportedPattern(String(e));
    }
    if (cache.size > 10_000) cache.clear();
    cache.set(key, re);
  }
  if (re instanceof UnsupportedPattern) {
    onUnsupported?.(key, re.message);
    return name === key || name.endsWith(`.${key}`);
  }
  return re.test(name);
}
