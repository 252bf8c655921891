/**
 * Minimal GGUF v3 writer for LoRA adapters (F32 / F16 tensors only) and the llama.cpp name mapping.
 *
 * Layout: "GGUF" u32 3, u64 n_tensors, u64 n_kv, KVs, tensor infos (name, n_dims, ne[] innermost first,
 * ggml type, offset), padding to 32, tensor data (each tensor aligned to 32).
 */
import { floatToHalf } from '../formats/dtype';

export type GgufKv =
  | { key: string; type: 'string'; value: string }
  | { key: string; type: 'f32'; value: number }
  | { key: string; type: 'u32'; value: number }
  | { key: string; type: 'bool'; value: boolean }
  | { key: string; type: 'string[]'; value: string[] }
  | { key: string; type: 'f32[]'; value: ArrayLike<number> }
  | { key: string; type: 'i32[]'; value: ArrayLike<number> };

export interface GgufOutTensor {
  name: string;
  /** Torch-order shape (outermost first); written reversed as ne. */
  shape: number[];
  type: 'F32' | 'F16';
  values: Float32Array;
}

const ALIGN = 32;

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const l = Buffer.alloc(8);
  l.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([l, b]);
}
const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };

const f32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; };

// GGUF value types: UINT32 4, INT32 5, FLOAT32 6, BOOL 7, STRING 8, ARRAY 9 (element type, u64 count, elements).
function encodeKv(kv: GgufKv): Buffer[] {
  const out = [str(kv.key)];
  const arr = (elem: number, n: number, items: Buffer[]): Buffer[] => [u32(9), u32(elem), u64(n), ...items];
  switch (kv.type) {
    case 'string': out.push(u32(8), str(kv.value)); break;
    case 'u32': out.push(u32(4), u32(kv.value)); break;
    case 'f32': out.push(u32(6), f32(kv.value)); break;
    case 'bool': out.push(u32(7), Buffer.from([kv.value ? 1 : 0])); break;
    case 'string[]': out.push(...arr(8, kv.value.length, kv.value.map(str))); break;
    case 'f32[]': { const b = Buffer.alloc(4 * kv.value.length); for (let i = 0; i < kv.value.length; i++) b.writeFloatLE(kv.value[i], 4 * i); out.push(...arr(6, kv.value.length, [b])); break; }
    case 'i32[]': { const b = Buffer.alloc(4 * kv.value.length); for (let i = 0; i < kv.value.length; i++) b.writeInt32LE(kv.value[i], 4 * i); out.push(...arr(5, kv.value.length, [b])); break; }
  }
  return out;
}

/** Tensor data bytes (little-endian F32, or IEEE half for F16). */
export function ggufTensorBytes(type: 'F32' | 'F16', values: Float32Array): Buffer {
  if (type === 'F32') return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const data = Buffer.alloc(values.length * 2);
  for (let i = 0; i < values.length; i++) data.writeUInt16LE(floatToHalf(values[i]), 2 * i);
  return data;
}

/**
 * Header of a GGUF file (magic … tensor infos, padded to the alignment) for tensors whose data will
 * follow in this order; `offsets[i]` is tensor i's offset in the data section and `dataBytes` its size.
 * Lets large files be written tensor by tensor (ggufModel.ts) instead of in one buffer.
 */
export function ggufHeader(kvs: GgufKv[], tensors: { name: string; shape: number[]; type: 'F32' | 'F16' }[]): { head: Buffer; offsets: number[]; dataBytes: number } {
  const parts: Buffer[] = [Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(kvs.length)];
  for (const kv of kvs) parts.push(...encodeKv(kv));
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(off);
    const ne = [...t.shape].reverse();
    parts.push(str(t.name), u32(ne.length), ...ne.map(u64), u32(t.type === 'F32' ? 0 : 1), u64(off));
    off = Math.ceil((off + t.shape.reduce((a, b) => a * b, 1) * (t.type === 'F32' ? 4 : 2)) / ALIGN) * ALIGN;
  }
  const head = Buffer.concat(parts);
  return { head: Buffer.concat([head, Buffer.alloc(Math.ceil(head.length / ALIGN) * ALIGN - head.length)]), offsets, dataBytes: off };
}

/** Serialises a GGUF file. */
export function encodeGguf(kvs: GgufKv[], tensors: GgufOutTensor[]): Buffer {
  const parts: Buffer[] = [Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(kvs.length)];
  for (const kv of kvs) parts.push(...encodeKv(kv));
  const datas: Buffer[] = [];
  let off = 0;
  const offs: number[] = [];
  for (const t of tensors) {
    let data: Buffer;
    if (t.type === 'F32') data = Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength);
    else {
      data = Buffer.alloc(t.values.length * 2);
      for (let i = 0; i < t.values.length; i++) data.writeUInt16LE(floatToHalf(t.values[i]), 2 * i);
    }
    datas.push(data);
    offs.push(off);
    const ne = [...t.shape].reverse();
    parts.push(str(t.name), u32(ne.length), ...ne.map(u64), u32(t.type === 'F32' ? 0 : 1), u64(off));
    off = Math.ceil((off + data.length) / ALIGN) * ALIGN;
  }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc(Math.ceil(head.length / ALIGN) * ALIGN - head.length)]);
  const body = Buffer.alloc(off);
  datas.forEach((d, i) => body.set(d, offs[i]));
  return Buffer.concat([head, body]);
}

// Maps, not object literals: a module named "constructor" must not find Object.prototype members.
const LLAMA_KIND = new Map<string, string>([
  ['self_attn.q_proj', 'attn_q'], ['self_attn.k_proj', 'attn_k'], ['self_attn.v_proj', 'attn_v'], ['self_attn.o_proj', 'attn_output'],
  ['mlp.gate_proj', 'ffn_gate'], ['mlp.up_proj', 'ffn_up'], ['mlp.down_proj', 'ffn_down'],
]);
const GGUF_KIND = new Map([...LLAMA_KIND].map(([k, v]) => [v, k]));

/** HF Llama-style module name → llama.cpp tensor base name (`blk.N.attn_q.weight`), or undefined. */
export function llamaCppName(module: string): string | undefined {
  const g = /^blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)(?:\.weight)?$/.exec(module);
  if (g) return `blk.${g[1]}.${g[2]}.weight`;
  const m = /^(?:.*\.)?layers\.(\d+)\.((?:self_attn|mlp)\.[a-z_]+)$/.exec(module);
  const kind = m ? LLAMA_KIND.get(m[2]) : undefined;
  if (!m || !kind) return undefined;
  return `blk.${m[1]}.${kind}.weight`;
}

/** llama.cpp base name (`blk.N.attn_q[.weight]`) → HF Llama module name, or undefined. */
export function hfNameFromLlamaCpp(name: string): string | undefined {
  const g = /^blk\.(\d+)\.([a-z_]+)(?:\.weight)?$/.exec(name);
  const kind = g ? GGUF_KIND.get(g[2]) : undefined;
  if (!g || !kind) return undefined;
  return `model.layers.${g[1]}.${kind}`;
}

/** q or k projection (they are RoPE-permuted by llama.cpp's Llama converter). */
export function ropeKind(module: string): 'q' | 'k' | undefined {
  if (/(?:^|\.)(?:q_proj|attn_q)(?:\.weight)?$/.test(module)) return 'q';
  if (/(?:^|\.)(?:k_proj|attn_k)(?:\.weight)?$/.test(module)) return 'k';
  return undefined;
}

/**
 * Row permutation applied by convert_hf_to_gguf.py `LlamaModel.permute` to q (n_head) and k (n_head_kv) rows:
 * reshape(h, 2, d/2) → swapaxes(1, 2). Returns p with outRow[k] = inRow[p[k]]; `inverse` gives the GGUF → HF map.
 */
export function ropePermutation(rows: number, heads: number, inverse = false): Int32Array {
  if (rows % (2 * heads) !== 0) throw new Error(`RoPE permutation: ${rows} rows is not a multiple of 2·${heads} heads`);
  const hd = rows / heads, half = hd / 2;
  const p = new Int32Array(rows);
  for (let h = 0; h < heads; h++) for (let i = 0; i < half; i++) for (let j = 0; j < 2; j++) {
    const outRow = h * hd + i * 2 + j, inRow = h * hd + j * half + i;
    if (inverse) p[inRow] = outRow; else p[outRow] = inRow;
  }
  return p;
}
