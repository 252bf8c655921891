/**
 * The tiny attention-only transformer of papers.md §5.3 (modular addition → subtraction) as Tape
 * graphs, plus its data and LoRA wiring.
 *
 *   tokens [N, 4] = [x, op, y, =]  (ids: '=' p, '+' p+1, '−' p+2; vocab p+3)
 *   h = W_E[tokens] + W_pos                                       [N, 4, d]
 *   repeat depth times (shared weights):  h ← h + Attn(h)
 *     Attn(h) = softmax(q kᵀ · attnScale) v · W_Oᵀ + b_O,  q = h W_Qᵀ, k = h W_Kᵀ, v = h W_Vᵀ (1 head)
 *   logits = h[:, 3, :] · W_Uᵀ                                     [N, vocab];  loss = CE
 *
 * Weights use torch nn.Linear layout ([out, in], y = x Wᵀ). LoRA on a module adds
 * (α/r)·(x Aᵀ) Bᵀ with A [r, in], B [out, r] (PEFT names lora_A / lora_B).
 */
import type { Tape, V } from './autodiff';
import { Rng } from '../util/rng';

export type Float = Float32Array | Float64Array;

export interface TinyTransformerConfig {
  p: number;
  dModel: number;
  depth: number;
  /** Multiplier of q·k (default 1/√d_model, one head). */
  attnScale?: number;
}

export const SEQ_LEN = 4;
export const vocabSize = (c: TinyTransformerConfig): number => c.p + 3;

export type LoraTarget = 'attn.query_matrix' | 'attn.key_matrix' | 'attn.value_matrix' | 'attn.out_proj';
export const LORA_TARGETS: LoraTarget[] = ['attn.query_matrix', 'attn.key_matrix', 'attn.value_matrix', 'attn.out_proj'];

export interface LoraSpec {
  targets: LoraTarget[];
  r: number;
  alpha: number;
}

export interface ParamTensor {
  shape: number[];
  data: Float;
}
export type ParamSet = Record<string, ParamTensor>;

/** Base parameter names and shapes (safetensors names). */
export function baseShapes(c: TinyTransformerConfig): Record<string, number[]> {
  const d = c.dModel, V = vocabSize(c);
  return {
    'embed.weight': [V, d],
    'pos_embed.weight': [SEQ_LEN, d],
    'attn.query_matrix.weight': [d, d],
    'attn.key_matrix.weight': [d, d],
    'attn.value_matrix.weight': [d, d],
    'attn.out_proj.weight': [d, d],
    'attn.out_proj.bias': [d],
    'unembed.weight': [V, d],
  };
}

function alloc(n: number, dtype: 'float32' | 'float64'): Float {
  return dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
}

/** Random init as in the notebook: W_E ~ N/√d, W_U ~ N/√vocab, Linear layers U(±1/√in). */
export function initBase(c: TinyTransformerConfig, seed = 0, dtype: 'float32' | 'float64' = 'float32'): ParamSet {
  const rng = new Rng(seed);
  const out: ParamSet = {};
  for (const [name, shape] of Object.entries(baseShapes(c))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = alloc(n, dtype);
    const fanIn = shape[shape.length - 1];
    for (let i = 0; i < n; i++) {
      if (name.startsWith('embed') || name.startsWith('pos')) data[i] = rng.normal() / Math.sqrt(c.dModel);
      else if (name.startsWith('unembed')) data[i] = rng.normal() / Math.sqrt(vocabSize(c));
      else data[i] = (2 * rng.uniform() - 1) / Math.sqrt(fanIn);
    }
    out[name] = { shape, data };
  }
  return out;
}

/** PEFT init: A Kaiming-uniform(a=√5) = U(±1/√in), B = 0. */
export function initLora(c: TinyTransformerConfig, spec: LoraSpec, seed = 0, dtype: 'float32' | 'float64' = 'float32'): ParamSet {
  const rng = new Rng(seed + 7919);
  const d = c.dModel, out: ParamSet = {};
  for (const m of spec.targets) {
    const A = alloc(spec.r * d, dtype);
    for (let i = 0; i < A.length; i++) A[i] = (2 * rng.uniform() - 1) / Math.sqrt(d);
    out[`${m}.lora_A.weight`] = { shape: [spec.r, d], data: A };
    out[`${m}.lora_B.weight`] = { shape: [d, spec.r], data: alloc(d * spec.r, dtype) };
  }
  return out;
}

/** Graph input name of a parameter (ONNX names avoid dots for readability). */
export const inputName = (param: string): string => param.replace(/\./g, '_');

/**
 * Logits [N, vocab] of the model. `w` maps parameter names (base + optional lora_A/B) to tape values.
 */
export function forward(t: Tape, c: TinyTransformerConfig, w: Record<string, V>, tokens: V, lora?: LoraSpec): V {
  const N = tokens.shape[0], d = c.dModel, T = SEQ_LEN;
  const s = lora ? lora.alpha / lora.r : 0;
  const lin = (x2: V, mod: string): V => {
    let y = t.matmul(x2, t.transpose(w[`${mod}.weight`]));
    if (lora && (lora.targets as string[]).includes(mod)) {
      const xa = t.matmul(x2, t.transpose(w[`${mod}.lora_A.weight`]));
      y = t.add(y, t.scale(t.matmul(xa, t.transpose(w[`${mod}.lora_B.weight`])), s));
    }
    return y;
  };
  let h = t.add(t.gather(w['embed.weight'], tokens), w['pos_embed.weight']);
  const scale = c.attnScale ?? 1 / Math.sqrt(d);
  for (let l = 0; l < c.depth; l++) {
    const h2 = t.reshape(h, [N * T, d]);
    const q = t.reshape(lin(h2, 'attn.query_matrix'), [N, T, d]);
    const k = t.reshape(lin(h2, 'attn.key_matrix'), [N, T, d]);
    const v = t.reshape(lin(h2, 'attn.value_matrix'), [N, T, d]);
    const a = t.softmax(t.scale(t.matmul(q, t.mT(k)), scale), -1);
    const z = t.reshape(t.matmul(a, v), [N * T, d]);
    const o = t.add(lin(z, 'attn.out_proj'), w['attn.out_proj.bias']);
    h = t.add(h, t.reshape(o, [N, T, d]));
  }
  const last = t.reshape(t.slice(h, [T - 1], [T], [1]), [N, d]);
  return t.matmul(last, t.transpose(w['unembed.weight']));
}

export interface ModData {
  tokens: BigInt64Array; // [n, 4]
  labels: BigInt64Array; // [n]
  n: number;
}

/** Token ids of the prompt [x, op, y, eq] and the label of a modular task. */
export interface ModularPrompt {
  /** Operator token (default '+' = p + 1). */
  op: number;
  /** Token at the last (read-out) position (default '=' = p). */
  eq: number;
  label: (x: number, y: number) => number;
}

/** Token ids: '=' p, '+' p+1, '−' p+2 (vocab p+3). */
export const modTokens = (p: number) => ({ eq: p, plus: p + 1, minus: p + 2 });

/** All p² prompts [x, op, y, eq] of a modular task, shuffled with `seed`, split into train (fraction) and test. */
export function modularTaskData(p: number, prompt: ModularPrompt, trainFrac: number, seed = 0): { train: ModData; test: ModData } {
  const idx = Array.from({ length: p * p }, (_, i) => i);
  const rng = new Rng(seed + 31);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const make = (ids: number[]): ModData => {
    const tokens = new BigInt64Array(ids.length * SEQ_LEN), labels = new BigInt64Array(ids.length);
    ids.forEach((id, i) => {
      const x = Math.floor(id / p), y = id % p;
      tokens.set([BigInt(x), BigInt(prompt.op), BigInt(y), BigInt(prompt.eq)], i * SEQ_LEN);
      labels[i] = BigInt(prompt.label(x, y));
    });
    return { tokens, labels, n: ids.length };
  };
  const nTrain = Math.round(trainFrac * idx.length);
  return { train: make(idx.slice(0, nTrain)), test: make(idx.slice(nTrain)) };
}

/** All p² prompts of `x op y =`, shuffled with `seed`, split into train (fraction) and test. */
export function modularData(p: number, op: '+' | '-', trainFrac: number, seed = 0): { train: ModData; test: ModData } {
  const t = modTokens(p);
  return modularTaskData(p, {
    op: op === '+' ? t.plus : t.minus, eq: t.eq,
    label: op === '+' ? (x, y) => (x + y) % p : (x, y) => (((x - y) % p) + p) % p,
  }, trainFrac, seed);
}

/** W + (α/r)·B·A for every LoRA target (returns a new ParamSet, fp64 accumulation). */
export function mergeLora(base: ParamSet, lora: ParamSet, spec: LoraSpec): ParamSet {
  const out: ParamSet = { ...base };
  const s = spec.alpha / spec.r;
  for (const m of spec.targets) {
    const W = base[`${m}.weight`], A = lora[`${m}.lora_A.weight`], B = lora[`${m}.lora_B.weight`];
    const [o, i] = W.shape, r = spec.r;
    const M = new (W.data.constructor as { new (n: number): Float })(o * i);
    for (let a = 0; a < o; a++)
      for (let b = 0; b < i; b++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += B.data[a * r + k] * A.data[k * i + b];
        M[a * i + b] = W.data[a * i + b] + s * acc;
      }
    out[`${m}.weight`] = { shape: W.shape, data: M };
  }
  return out;
}
