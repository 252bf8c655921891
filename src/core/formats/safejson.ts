/**
 * JSON from files we did not write, with bounded depth and size, and names kept as data.
 *
 * V8's JSON.parse itself copes with deep nesting, but everything that walks the result
 * recursively afterwards (JSON.stringify in a message, structured clone to a worker, our own
 * walkers) overflows the call stack on 20k+ levels. So before parsing, one linear scan over the
 * text (strings skipped) measures the nesting depth and counts the values; text that is too deep
 * or holds too many values is refused with a FormatError naming the file, without ever building
 * the objects. serde_json (used by the reference safetensors reader) stops at depth 128 too.
 */
import { FormatError } from './errors';

/** Deepest nesting of objects/arrays accepted in any JSON we read (serde_json's default limit). */
export const MAX_JSON_DEPTH = 128;

export interface JsonScan {
  depth: number;
  /** Objects + arrays + members/elements (an upper bound on the JS values JSON.parse creates). */
  values: number;
}

/**
 * One pass over `text`: maximal nesting depth and number of values. Stops early (returning the
 * depth reached) once `maxDepth` is exceeded. Linear in the text length, no allocation.
 */
export function scanJson(text: string, maxDepth = MAX_JSON_DEPTH): JsonScan {
  let depth = 0, max = 0, values = 0, inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c) i++; // backslash: skip the escaped char
      else if (c === 0x22) inStr = false;
      continue;
    }
    switch (c) {
      case 0x22: inStr = true; break; // "
      case 0x7b: case 0x5b: // { [
        values++;
        if (++depth > max) { max = depth; if (max > maxDepth) return { depth: max, values }; }
        break;
      case 0x7d: case 0x5d: depth--; break; // } ]
      case 0x2c: case 0x3a: values++; break; // , : (one more member or element)
      default: break;
    }
  }
  return { depth: max, values };
}

/**
 * Parses JSON text from `file` (what: "header", "index", ...). Refuses nesting deeper than
 * MAX_JSON_DEPTH and more than `maxValues` values with a FormatError naming the file.
 */
export function parseJsonText(text: string, file: string, what: string, maxValues = Number.MAX_SAFE_INTEGER): unknown {
  const s = scanJson(text);
  if (s.depth > MAX_JSON_DEPTH) throw new FormatError(file, `${what} nests JSON more than ${MAX_JSON_DEPTH} levels deep (corrupt or hostile file)`);
  if (s.values > maxValues) throw new FormatError(file, `${what} holds more than ${maxValues.toLocaleString('en-US')} JSON values (limit; corrupt or hostile file?)`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `${what} is not valid JSON (${(e as Error).message.slice(0, 200)})`);
  }
}

/** JSON.stringify for messages: never longer than `max` characters. */
export function shortJson(v: unknown, max = 80): string {
  let s: string;
  try { s = JSON.stringify(v) ?? String(v); } catch { s = typeof v; }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Own string-valued entries of a parsed JSON object as a Map (names are data: `__proto__`, `constructor` stay keys). */
export function stringMap(v: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return m;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (typeof x === 'string') m.set(k, x);
  return m;
}

/** A null-prototype record: `rec[name] = v` keeps any name (`__proto__` included) as an own key (internal use). */
export function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/**
 * `obj[key] = value` as an own data property for every key: `__proto__` becomes a key instead of
 * replacing the prototype (plain objects stay plain for callers that compare them).
 */
export function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}
