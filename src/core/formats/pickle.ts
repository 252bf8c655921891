/**
 * Restricted pickle reader for PyTorch state dicts. It never executes anything: it interprets the
 * opcodes of the pickle virtual machine into plain values, and the only callables it knows are an
 * allow-list of constructors that it *describes* (a tensor reference, an ordered dict) instead of
 * calling. Any other global (os.system, numpy reconstruct, transformers.TrainingArguments...) makes
 * the whole file refused with a FormatError naming the reference.
 *
 * Supported: protocols 0-5 data opcodes used by torch.save (dicts, lists, tuples, ints, floats,
 * strings, bytes, booleans, None, memo, frames), BINPERSID for storages, GLOBAL / STACK_GLOBAL /
 * REDUCE / NEWOBJ / BUILD for the allow-list only.
 */
import { DType } from './dtype';
import { FormatError } from './errors';

/** Storage classes torch.save references in persistent ids, and the element type each holds. */
export const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8',
  ByteStorage: 'U8', BoolStorage: 'BOOL',
  Float8_e4m3fnStorage: 'F8_E4M3', Float8_e5m2Storage: 'F8_E5M2',
  UInt16Storage: 'U16', UInt32Storage: 'U32', UInt64Storage: 'U64',
};

/** Globals the reader understands. Everything else is refused. */
const ALLOWED_GLOBALS = new Set<string>([
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'collections.OrderedDict',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

export interface PickleGlobal { kind: 'global'; module: string; name: string }
export interface StorageRef { kind: 'storage'; dtype: DType; storageClass: string; key: string; location: string; numel: number }
export interface TensorRef {
  kind: 'tensor';
  storage: StorageRef;
  storageOffset: number;
  shape: number[];
  stride: number[];
}
/** Dicts keep insertion order; keys are strings or numbers. */
export interface PickleDict { kind: 'dict'; entries: Map<PickleKey, PickleValue> }
export type PickleKey = string | number | boolean | null;
export interface PickleTuple { kind: 'tuple'; items: PickleValue[] }
export interface PickleList { kind: 'list'; items: PickleValue[] }
export type PickleValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PickleGlobal | StorageRef | TensorRef | PickleDict | PickleTuple | PickleList;

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/** Largest data.pkl we parse (a state dict with 100k tensors is a few MB). */
export const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

/**
 * Budget for the JS objects a pickle may make us build, estimated per opcode (a stack slot, a
 * container, a dict entry, a memo entry, string bytes). A state dict costs ~1 KB per tensor (100k tensors ≈ 100 MB); a
 * flood of EMPTY_DICT, `}` or `N` opcodes (a few bytes each, hundreds of bytes of heap each) hits
 * this limit long before V8 runs out of heap.
 */
export const MAX_PICKLE_OBJECT_BYTES = 128 * 1024 * 1024;
// Measured V8 sizes (node 20, x64): an empty dict value (object + Map) ~300 bytes, a tuple/list
// ~100, a stack slot 8 (+ array growth slack), a Map entry ~40.
const COST_SLOT = 24;
const COST_CONTAINER = 320;
const COST_ENTRY = 64;

function isObj(v: unknown, kind: string): boolean {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && (v as { kind?: string }).kind === kind;
}

function describe(v: PickleValue | typeof MARK | undefined): string {
  if (v === MARK) return 'mark';
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return (v as { kind: string }).kind === 'global' ? `${(v as PickleGlobal).module}.${(v as PickleGlobal).name}` : (v as { kind: string }).kind;
  return typeof v;
}

/**
 * Parses a pickle held in memory. `file` names the container for error messages.
 * @throws FormatError for unknown opcodes, truncated data, forbidden globals, malformed tensors.
 */
export function parsePickle(data: Uint8Array, file: string): PickleValue {
  const fail = (pos: number, problem: string): never => {
    throw new FormatError(file, `pickle byte ${pos}: ${problem}`);
  };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = 0;
  let opAt = 0;
  let budget = MAX_PICKLE_OBJECT_BYTES;
  const charge = (n: number): void => {
    budget -= n;
    if (budget < 0) fail(opAt, `builds more than ${MAX_PICKLE_OBJECT_BYTES / 1048576} MiB of objects (limit): not a plain state dict (corrupt or hostile pickle, e.g. an opcode flood)`);
  };
  const push = (v: StackItem): void => {
    let c = COST_SLOT;
    if (typeof v === 'string') c += 2 * v.length;
    else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) c += COST_CONTAINER;
    charge(c);
    stack.push(v);
  };
  const memoSet = (k: number, v: PickleValue): void => {
    if (!memo.has(k)) charge(COST_ENTRY);
    memo.set(k, v);
  };
  const need = (n: number, at: number): void => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.length) fail(at, `needs ${n} more bytes but the pickle ends at ${data.length} (truncated?)`);
  };
  const u8 = (): number => { need(1, pos); return data[pos++]; };
  const u16 = (): number => { need(2, pos); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4, pos); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const i32 = (): number => { need(4, pos); const v = dv.getInt32(pos, true); pos += 4; return v; };
  const u64 = (at: number): number => {
    need(8, pos);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(at, `length ${v} is too large`);
    return Number(v);
  };
  const bytes = (n: number, at: number): Uint8Array => { need(n, at); const b = data.subarray(pos, pos + n); pos += n; return b; };
  const text = (n: number, at: number): string => {
    const b = bytes(n, at);
    try { return utf8.decode(b); } catch { return fail(at, 'string is not valid UTF-8'); }
  };
  const line = (at: number): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail(at, 'unterminated text line');
    const s = Buffer.from(data.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const pop = (at: number): PickleValue => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail(at, 'stack underflow (malformed pickle)');
    const v = stack.pop()!;
    if (v === MARK) fail(at, 'unexpected mark');
    return v as PickleValue;
  };
  const top = (at: number): PickleValue => {
    if (stack.length === 0) fail(at, 'stack underflow (malformed pickle)');
    const v = stack[stack.length - 1];
    if (v === MARK) fail(at, 'unexpected mark');
    return v as PickleValue;
  };
  const popMark = (at: number): PickleValue[] => {
    const m = marks.pop();
    if (m === undefined) fail(at, 'no mark on the stack (malformed pickle)');
    const items = stack.splice(m!) as PickleValue[];
    items.shift(); // the MARK itself
    if (items.some((x) => (x as unknown) === MARK)) fail(at, 'nested mark (malformed pickle)');
    return items;
  };
  const global = (module: string, name: string, at: number): PickleGlobal => {
    const full = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(full)) {
      fail(at, `refuses to load: the pickle references ${full}, which could run code (only tensors and dicts are read)`);
    }
    return { kind: 'global', module, name };
  };
  const asKey = (k: PickleValue, at: number): PickleKey => {
    if (typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean' || k === null) return k;
    if (typeof k === 'bigint') return Number(k);
    if (isObj(k, 'tuple')) return JSON.stringify((k as PickleTuple).items.map((x) => (typeof x === 'object' && x !== null ? describe(x) : String(x))));
    return fail(at, `dict key of type ${describe(k)} is not supported`);
  };
  const setItems = (target: PickleValue, items: PickleValue[], at: number): void => {
    if (!isObj(target, 'dict')) fail(at, `SETITEM(S) on ${describe(target)}, expected a dict`);
    if (items.length % 2) fail(at, 'odd number of items for SETITEMS');
    const d = (target as PickleDict).entries;
    charge(COST_ENTRY * (items.length / 2));
    for (let i = 0; i < items.length; i += 2) d.set(asKey(items[i], at), items[i + 1]);
  };
  const appendItems = (target: PickleValue, items: PickleValue[], at: number): void => {
    if (!isObj(target, 'list')) fail(at, `APPEND(S) on ${describe(target)}, expected a list`);
    const dst = (target as PickleList).items;
    charge(8 * items.length);
    for (const x of items) dst.push(x); // no spread: 100k+ items would overflow the call stack
  };
  const intOf = (v: PickleValue, what: string, at: number): number => {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
    return fail(at, `${what} is ${describe(v)}, expected an integer`);
  };
  const intTuple = (v: PickleValue, what: string, at: number): number[] => {
    if (!isObj(v, 'tuple') && !isObj(v, 'list')) fail(at, `${what} is ${describe(v)}, expected a tuple of integers`);
    return (v as PickleTuple).items.map((x) => intOf(x, what, at));
  };
  /** Applies an allow-listed callable to its arguments, describing the result (never calling anything). */
  const reduce = (fn: PickleValue, args: PickleValue, at: number): PickleValue => {
    if (!isObj(fn, 'global')) fail(at, `REDUCE on ${describe(fn)}, which is not an allowed callable`);
    if (!isObj(args, 'tuple')) fail(at, `REDUCE arguments are ${describe(args)}, expected a tuple`);
    const g = fn as PickleGlobal;
    const a = (args as PickleTuple).items;
    const full = `${g.module}.${g.name}`;
    switch (full) {
      case 'collections.OrderedDict':
        if (a.length > 0) fail(at, 'OrderedDict called with arguments (not produced by torch.save)');
        return { kind: 'dict', entries: new Map() };
      case 'torch._utils._rebuild_tensor_v2': {
        if (a.length < 4) fail(at, `_rebuild_tensor_v2 has ${a.length} arguments, expected at least 4`);
        if (!isObj(a[0], 'storage')) fail(at, `_rebuild_tensor_v2 storage argument is ${describe(a[0])}`);
        return {
          kind: 'tensor', storage: a[0] as StorageRef,
          storageOffset: intOf(a[1], 'storage_offset', at),
          shape: intTuple(a[2], 'size', at), stride: intTuple(a[3], 'stride', at),
        };
      }
      case 'torch._utils._rebuild_parameter':
        if (a.length < 1 || !isObj(a[0], 'tensor')) fail(at, `_rebuild_parameter argument is ${describe(a[0])}, expected a tensor`);
        return a[0];
      default:
        return fail(at, `refuses to load: ${full} is not a callable LoRA Lens reads (only tensors and dicts)`);
    }
  };

  for (;;) {
    const at = pos;
    opAt = at;
    if (pos >= data.length) fail(at, 'pickle ended without STOP (truncated?)');
    const op = data[pos++];
    switch (op) {
      case 0x80: { const p = u8(); if (p > 5) fail(at, `unsupported pickle protocol ${p}`); break; } // PROTO
      case 0x95: u64(at); break; // FRAME: length only, data follows inline
      case 0x2e: { // STOP
        const v = pop(at);
        return v;
      }
      case 0x28: marks.push(stack.length); push(MARK); break; // MARK
      case 0x7d: push({ kind: 'dict', entries: new Map() }); break; // EMPTY_DICT
      case 0x5d: push({ kind: 'list', items: [] }); break; // EMPTY_LIST
      case 0x29: push({ kind: 'tuple', items: [] }); break; // EMPTY_TUPLE
      case 0x8f: push({ kind: 'list', items: [] }); break; // EMPTY_SET (kept as list)
      case 0x74: { const items = popMark(at); push({ kind: 'tuple', items }); break; } // TUPLE
      case 0x85: { const a = pop(at); push({ kind: 'tuple', items: [a] }); break; } // TUPLE1
      case 0x86: { const b = pop(at); const a = pop(at); push({ kind: 'tuple', items: [a, b] }); break; } // TUPLE2
      case 0x87: { const c = pop(at); const b = pop(at); const a = pop(at); push({ kind: 'tuple', items: [a, b, c] }); break; } // TUPLE3
      case 0x6c: { const items = popMark(at); push({ kind: 'list', items }); break; } // LIST
      case 0x64: { // DICT
        const items = popMark(at);
        const d: PickleDict = { kind: 'dict', entries: new Map() };
        setItems(d, items, at);
        push(d);
        break;
      }
      case 0x91: { const items = popMark(at); push({ kind: 'list', items }); break; } // FROZENSET
      case 0x90: { const items = popMark(at); const s = top(at); if (!isObj(s, 'list')) fail(at, 'ADDITEMS target is not a set'); for (const x of items) (s as PickleList).items.push(x); break; } // ADDITEMS
      case 0x73: { const v = pop(at); const k = pop(at); setItems(top(at), [k, v], at); break; } // SETITEM
      case 0x75: { const items = popMark(at); setItems(top(at), items, at); break; } // SETITEMS
      case 0x61: { const v = pop(at); appendItems(top(at), [v], at); break; } // APPEND
      case 0x65: { const items = popMark(at); appendItems(top(at), items, at); break; } // APPENDS
      case 0x30: pop(at); break; // POP
      case 0x31: popMark(at); break; // POP_MARK
      case 0x32: push(top(at)); break; // DUP
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: push(i32()); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x8a: case 0x8b: { // LONG1 / LONG4
        const n = op === 0x8a ? u8() : u32();
        if (n > 64) fail(at, `integer of ${n} bytes is too large`);
        const b = bytes(n, at);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x49: { // INT (text)
        const s = line(at).trim();
        if (s === '00') push(false); else if (s === '01') push(true);
        else { const v = Number(s); if (!Number.isSafeInteger(v)) fail(at, `bad INT ${JSON.stringify(s.slice(0, 30))}`); push(v); }
        break;
      }
      case 0x4c: { // LONG (text)
        const s = line(at).trim().replace(/L$/, '');
        if (!/^-?\d{1,40}$/.test(s)) fail(at, `bad LONG ${JSON.stringify(s.slice(0, 30))}`);
        const v = BigInt(s);
        push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: { need(8, at); push(dv.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT (big-endian)
      case 0x46: { const v = Number(line(at)); if (Number.isNaN(v)) fail(at, 'bad FLOAT'); push(v); break; } // FLOAT (text)
      case 0x8c: { const n = u8(); push(text(n, at)); break; } // SHORT_BINUNICODE
      case 0x58: { const n = u32(); push(text(n, at)); break; } // BINUNICODE
      case 0x8d: { const n = u64(at); push(text(n, at)); break; } // BINUNICODE8
      case 0x55: { const n = u8(); push(Buffer.from(bytes(n, at)).toString('latin1')); break; } // SHORT_BINSTRING
      case 0x54: { const n = i32(); if (n < 0) fail(at, 'negative string length'); push(Buffer.from(bytes(n, at)).toString('latin1')); break; } // BINSTRING
      case 0x43: { const n = u8(); push(bytes(n, at)); break; } // SHORT_BINBYTES
      case 0x42: { const n = u32(); push(bytes(n, at)); break; } // BINBYTES
      case 0x8e: case 0x96: { const n = u64(at); push(bytes(n, at)); break; } // BINBYTES8 / BYTEARRAY8
      case 0x71: memoSet(u8(), top(at)); break; // BINPUT
      case 0x72: memoSet(u32(), top(at)); break; // LONG_BINPUT
      case 0x94: memoSet(memo.size, top(at)); break; // MEMOIZE
      case 0x70: { const s = line(at); const k = Number(s); if (!Number.isSafeInteger(k)) fail(at, 'bad PUT'); memoSet(k, top(at)); break; } // PUT
      case 0x68: case 0x6a: case 0x67: { // BINGET / LONG_BINGET / GET
        const k = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line(at));
        if (!memo.has(k)) fail(at, `memo entry ${k} is not defined (malformed pickle)`);
        push(memo.get(k)!);
        break;
      }
      case 0x63: { const module = line(at); const name = line(at); push(global(module, name, at)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(at); const module = pop(at);
        if (typeof name !== 'string' || typeof module !== 'string') fail(at, 'STACK_GLOBAL operands are not strings');
        push(global(module as string, name as string, at));
        break;
      }
      case 0x52: { const args = pop(at); const fn = pop(at); push(reduce(fn, args, at)); break; } // REDUCE
      case 0x81: { const args = pop(at); const cls = pop(at); push(reduce(cls, args, at)); break; } // NEWOBJ
      case 0x62: { // BUILD: state for dicts (OrderedDict._metadata) is ignored; nothing else may be built
        const state = pop(at);
        const obj = top(at);
        if (!isObj(obj, 'dict') && !isObj(obj, 'tensor')) fail(at, `BUILD on ${describe(obj)} is not supported`);
        void state;
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop(at);
        if (!isObj(pid, 'tuple')) fail(at, `persistent id is ${describe(pid)}, expected a tuple`);
        const a = (pid as PickleTuple).items;
        if (a.length !== 5 || a[0] !== 'storage') fail(at, `persistent id ${describe(a[0] as PickleValue)} is not a torch storage reference`);
        if (!isObj(a[1], 'global')) fail(at, 'storage type is not a class reference');
        const cls = (a[1] as PickleGlobal).name;
        const dtype = STORAGE_DTYPES[cls];
        if (!dtype) fail(at, `storage class torch.${cls} is not supported`);
        const key = typeof a[2] === 'number' ? String(a[2]) : a[2];
        if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key)) fail(at, `storage key ${JSON.stringify(describe(a[2]))} is not a plain name`);
        const location = typeof a[3] === 'string' ? a[3] : String(a[3]);
        push({ kind: 'storage', dtype: dtype!, storageClass: cls, key: key as string, location, numel: intOf(a[4], 'storage size', at) });
        break;
      }
      case 0x69: { const module = line(at); const name = line(at); global(module, name, at); fail(at, `INST ${module}.${name} is not supported`); break; } // INST
      case 0x6f: fail(at, 'OBJ opcode (object construction) is not supported'); break;
      case 0x92: fail(at, 'NEWOBJ_EX opcode (object construction) is not supported'); break;
      case 0x82: case 0x83: case 0x84: fail(at, 'EXT opcodes (extension registry) are not supported'); break;
      case 0x50: fail(at, 'text PERSID is not supported'); break;
      default:
        fail(at, `unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** A tensor found in a pickled state dict, with its flattened key. */
export interface PickledTensor { key: string; ref: TensorRef }

/**
 * Walks nested dicts (torchtune `{"model": {...}}`, Lightning `{"state_dict": {...}}`) and returns
 * every tensor with keys joined by '.'; non-tensor leaves are counted and ignored.
 */
export function collectTensors(root: PickleValue, file: string): { tensors: PickledTensor[]; ignored: string[] } {
  const tensors: PickledTensor[] = [];
  const ignored: string[] = [];
  const seen = new Set<object>();
  const walk = (v: PickleValue, prefix: string, depth: number): void => {
    if (depth > 32) throw new FormatError(file, `pickle nests dicts more than 32 levels deep at "${prefix}"`);
    if (isObj(v, 'tensor')) { tensors.push({ key: prefix, ref: v as TensorRef }); return; }
    if (isObj(v, 'dict')) {
      // Each dict is walked once: a dict reached again (memo reuse, or a cycle) is skipped, so a
      // crafted DAG of shared dicts cannot make the walk exponential.
      if (seen.has(v as object)) { ignored.push(`${prefix || '(root)'} (dict seen before)`); return; }
      seen.add(v as object);
      for (const [k, x] of (v as PickleDict).entries) walk(x, prefix ? `${prefix}.${String(k)}` : String(k), depth + 1);
      return;
    }
    ignored.push(`${prefix || '(root)'} (${describe(v)})`);
  };
  walk(root, '', 0);
  return { tensors, ignored };
}
