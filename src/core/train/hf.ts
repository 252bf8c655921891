/**
 * Hugging Face causal-LM architectures on the Tape (autodiff.ts), for LoRA / BaLoRA fine-tuning
 * with the base frozen (hfTrainer.ts):
 *
 *   Llama family (llama, mistral, qwen2): RMSNorm (rms_norm_eps), RoPE (rope_theta, HF rotate_half
 *     convention), grouped-query causal attention, SwiGLU MLP, tied or separate lm_head, optional
 *     q/k/v/o biases when the checkpoint has them.
 *   GPT-2: LayerNorm, learned positions, gelu_new (tanh approximation), Conv1D weights [in, out],
 *     fused c_attn split into q, k, v; lm_head tied to wte.
 *
 * Frozen linear weights are fed to the graph pre-transposed to [in, out] (y = x·W), so GPT-2
 * Conv1D weights go in as stored. LoRA (PEFT layout A [r, in], B [out, r]) on a target module adds
 * s·(x Aᵀ) Bᵀ with s = α/r (or α/√r for rsLoRA). PEFT init: A Kaiming-uniform(a=√5) = U(±1/√in), B = 0.
 *
 * Activations: the Tape has no Sigmoid/Tanh gradient rule, so σ(x) is computed as the second entry
 * of softmax([0, x]) (numerically stable, exact gradient); SiLU = x·σ(x), gelu_new = x·σ(2u).
 *
 * Loss: −Σ w[n] · log softmax(logits[n])[label[n]] with host-computed shifted labels and weights
 * (data.ts makeBatch: HF's mean over non-ignored shifted targets). Attention masks padding keys
 * on top of the causal mask (additive −1e9).
 */
import type { Tape, V, FloatType } from './autodiff';
import type { Float, ParamSet } from './models';
import { Rng } from '../util/rng';
import { openBaseModel } from '../base/basemodel';
import * as path from 'node:path';
import { FormatError } from '../formats/errors';
import { shortJson } from '../formats/safejson';

export type HfKind = 'llama' | 'gpt2';

export interface HfArch {
  kind: HfKind;
  modelType: string;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  eps: number;
  ropeTheta: number;
  tie: boolean;
  maxPositions: number;
}

export const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
export const GPT2_TARGETS = ['c_attn', 'c_proj', 'c_fc'];
const LLAMA_TYPES = ['llama', 'mistral', 'qwen2'];

/** Largest sizes accepted from a config.json (far above any model trainable here; they bound allocations). */
export const HF_CONFIG_LIMITS = { hidden: 65_536, vocab: 4_194_304, layers: 1024, intermediate: 1_048_576, positions: 1_048_576 } as const;

/**
 * Architecture from a config.json object. `file` names the config in errors.
 * @throws FormatError for missing, non-numeric, zero, fractional or out-of-range sizes; Error for
 * unsupported model types / options.
 */
export function hfArchFromConfig(cfg: Record<string, unknown>, file = 'config.json'): HfArch {
  const bad = (k: string, v: unknown, why: string): never => {
    throw new FormatError(file, `"${k}" is ${typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : v === undefined ? 'missing' : shortJson(v, 40)}: ${why}`);
  };
  /** A positive integer size, at most `max`. */
  const size = (k: string, max: number, d?: number): number => {
    const v = cfg[k] ?? d;
    if (v === undefined) throw new FormatError(file, `has no numeric "${k}"`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) bad(k, v, 'expected a positive integer');
    if ((v as number) > max) bad(k, v, `larger than the ${max} this trainer accepts`);
    return v as number;
  };
  /** A finite positive real (eps, rope theta). */
  const real = (k: string, d: number): number => {
    const v = cfg[k] ?? d;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) bad(k, v, 'expected a finite positive number');
    return v as number;
  };
  const L = HF_CONFIG_LIMITS;
  const mt = typeof cfg.model_type === 'string' ? cfg.model_type : '';
  if (mt === 'gpt2') {
    const n = size('n_embd', L.hidden), h = size('n_head', n);
    if (n % h !== 0) bad('n_head', h, `does not divide n_embd ${n}`);
    const act = cfg.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new') throw new Error(`GPT-2 activation_function ${shortJson(act, 40)} is not supported (gelu_new only)`);
    if (cfg.scale_attn_by_inverse_layer_idx === true || cfg.reorder_and_upcast_attn === true) throw new Error('GPT-2 scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported');
    return {
      kind: 'gpt2', modelType: mt, vocab: size('vocab_size', L.vocab), hidden: n, layers: size('n_layer', L.layers), heads: h, kvHeads: h, headDim: n / h,
      intermediate: cfg.n_inner === null || cfg.n_inner === undefined ? 4 * n : size('n_inner', L.intermediate), eps: real('layer_norm_epsilon', 1e-5), ropeTheta: 0, tie: true,
      maxPositions: size('n_positions', L.positions, 1024),
    };
  }
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.filter((a): a is string => typeof a === 'string') : [];
  if (!LLAMA_TYPES.includes(mt) && !archs.some((a) => /^(Llama|Mistral|Qwen2)ForCausalLM$/.test(a))) {
    throw new Error(`model_type ${shortJson(cfg.model_type ?? '', 40)} is not supported for training (llama, mistral, qwen2, gpt2)`);
  }
  const rs = cfg.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs && (typeof rs !== 'object' || (rs.rope_type ?? rs.type) !== 'default')) throw new Error(`rope_scaling ${shortJson(rs)} is not supported`);
  const act = cfg.hidden_act ?? 'silu';
  if (act !== 'silu') throw new Error(`hidden_act ${shortJson(act, 40)} is not supported (silu only)`);
  const hidden = size('hidden_size', L.hidden), heads = size('num_attention_heads', hidden);
  const kvHeads = size('num_key_value_heads', heads, heads);
  if (heads % kvHeads !== 0) bad('num_key_value_heads', kvHeads, `does not divide num_attention_heads ${heads}`);
  if (cfg.head_dim === undefined && hidden % heads !== 0) bad('num_attention_heads', heads, `does not divide hidden_size ${hidden}`);
  const headDim = size('head_dim', L.hidden, hidden / heads);
  if (headDim % 2 !== 0) bad('head_dim', headDim, 'must be even for rotary embeddings');
  return {
    kind: 'llama', modelType: mt, vocab: size('vocab_size', L.vocab), hidden, layers: size('num_hidden_layers', L.layers), heads,
    kvHeads, headDim, intermediate: size('intermediate_size', L.intermediate),
    eps: real('rms_norm_eps', 1e-6), ropeTheta: real('rope_theta', 10000), tie: cfg.tie_word_embeddings === true,
    maxPositions: size('max_position_embeddings', L.positions, 2048),
  };
}

/** A linear module (PEFT module name), its [out, in] shape and whether it has a bias. */
export interface HfLinear {
  name: string;
  kind: string;
  out: number;
  in: number;
}

/** All linear modules LoRA can target, in layer order (names as in the HF module tree). */
export function hfLinears(a: HfArch): HfLinear[] {
  const out: HfLinear[] = [];
  for (let l = 0; l < a.layers; l++) {
    if (a.kind === 'llama') {
      const p = `model.layers.${l}`, q = a.heads * a.headDim, kv = a.kvHeads * a.headDim;
      out.push(
        { name: `${p}.self_attn.q_proj`, kind: 'q_proj', out: q, in: a.hidden },
        { name: `${p}.self_attn.k_proj`, kind: 'k_proj', out: kv, in: a.hidden },
        { name: `${p}.self_attn.v_proj`, kind: 'v_proj', out: kv, in: a.hidden },
        { name: `${p}.self_attn.o_proj`, kind: 'o_proj', out: a.hidden, in: q },
        { name: `${p}.mlp.gate_proj`, kind: 'gate_proj', out: a.intermediate, in: a.hidden },
        { name: `${p}.mlp.up_proj`, kind: 'up_proj', out: a.intermediate, in: a.hidden },
        { name: `${p}.mlp.down_proj`, kind: 'down_proj', out: a.hidden, in: a.intermediate },
      );
    } else {
      const p = `transformer.h.${l}`, n = a.hidden;
      out.push(
        { name: `${p}.attn.c_attn`, kind: 'c_attn', out: 3 * n, in: n },
        { name: `${p}.attn.c_proj`, kind: 'c_proj', out: n, in: n },
        { name: `${p}.mlp.c_fc`, kind: 'c_fc', out: a.intermediate, in: n },
        { name: `${p}.mlp.c_proj`, kind: 'c_proj', out: n, in: a.intermediate },
      );
    }
  }
  return out;
}

/** PEFT target matching: exact name or `.target` suffix. */
export const matchesTarget = (name: string, targets: string[]): boolean => targets.some((t) => name === t || name.endsWith(`.${t}`));

export interface HfLoraSpec {
  targets: string[];
  r: number;
  alpha: number;
  useRslora?: boolean;
}

export const loraScaling = (s: HfLoraSpec): number => (s.useRslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r);

/** Modules a spec adapts. @throws when a target matches nothing. */
export function loraModules(a: HfArch, spec: HfLoraSpec): HfLinear[] {
  const all = hfLinears(a);
  for (const t of spec.targets) if (!all.some((m) => matchesTarget(m.name, [t]))) throw new Error(`target module "${t}" matches no ${a.kind} linear layer (${[...new Set(all.map((m) => m.kind))].join(', ')})`);
  return all.filter((m) => matchesTarget(m.name, spec.targets));
}

function alloc(n: number, dtype: FloatType): Float {
  return dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
}

/** PEFT init: A ~ U(±1/√in) (Kaiming-uniform, a = √5), B = 0. Keys `<module>.lora_{A,B}.weight`. */
export function initHfLora(mods: HfLinear[], r: number, seed = 0, dtype: FloatType = 'float32'): ParamSet {
  const rng = new Rng(seed + 7919);
  const out: ParamSet = {};
  for (const m of mods) {
    const A = alloc(r * m.in, dtype), bound = 1 / Math.sqrt(m.in);
    for (let i = 0; i < A.length; i++) A[i] = (2 * rng.uniform() - 1) * bound;
    out[`${m.name}.lora_A.weight`] = { shape: [r, m.in], data: A };
    out[`${m.name}.lora_B.weight`] = { shape: [m.out, r], data: alloc(m.out * r, dtype) };
  }
  return out;
}

/** Frozen base in graph layout: linear weights (and lm_head) as [in, out]. */
export interface HfModel {
  dir: string;
  arch: HfArch;
  config: Record<string, unknown>;
  params: ParamSet;
}

function transposeInto(src: Float, rows: number, cols: number, dtype: FloatType): Float {
  const out = alloc(rows * cols, dtype);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j];
  return out;
}

/** Loads config.json + safetensors (single or sharded) of a Llama-family or GPT-2 folder. */
export function loadHfModel(dir: string, dtype: FloatType = 'float32'): HfModel {
  const bm = openBaseModel(dir);
  const arch = hfArchFromConfig(bm.config, path.join(dir, 'config.json'));
  const store = bm.store;
  const params: ParamSet = {};
  try {
    const find = (name: string): string | undefined => {
      const cands = arch.kind === 'gpt2' ? [name, name.replace(/^transformer\./, '')] : [name, name.replace(/^model\./, '')];
      return cands.find((c) => store.tensors.has(c));
    };
    const read = (name: string): Float => {
      const k = find(name);
      if (!k) throw new Error(`${store.path} has no tensor "${name}"`);
      return dtype === 'float32' ? store.readF32(k) : store.readF64(k);
    };
    const put = (name: string, shape: number[], data?: Float): void => {
      const d = data ?? read(name);
      if (d.length !== shape.reduce((x, y) => x * y, 1)) throw new Error(`tensor "${name}" has ${d.length} values, expected shape [${shape}]`);
      params[name] = { shape, data: d };
    };
    const H = arch.hidden;
    if (arch.kind === 'llama') {
      const emb = read('model.embed_tokens.weight');
      put('model.embed_tokens.weight', [arch.vocab, H], emb);
      put('model.norm.weight', [H]);
      const head = !arch.tie && find('lm_head.weight') ? read('lm_head.weight') : emb;
      put('lm_head.weight', [H, arch.vocab], transposeInto(head, arch.vocab, H, dtype));
      for (let l = 0; l < arch.layers; l++) {
        put(`model.layers.${l}.input_layernorm.weight`, [H]);
        put(`model.layers.${l}.post_attention_layernorm.weight`, [H]);
      }
      for (const m of hfLinears(arch)) {
        put(`${m.name}.weight`, [m.in, m.out], transposeInto(read(`${m.name}.weight`), m.out, m.in, dtype));
        if (find(`${m.name}.bias`)) put(`${m.name}.bias`, [m.out]);
      }
    } else {
      const wte = read('transformer.wte.weight');
      put('transformer.wte.weight', [arch.vocab, H], wte);
      put('transformer.wpe.weight', [arch.maxPositions, H]);
      put('lm_head.weight', [H, arch.vocab], transposeInto(wte, arch.vocab, H, dtype));
      for (const ln of ['transformer.ln_f', ...Array.from({ length: arch.layers }, (_, l) => [`transformer.h.${l}.ln_1`, `transformer.h.${l}.ln_2`]).flat()]) {
        put(`${ln}.weight`, [H]);
        put(`${ln}.bias`, [H]);
      }
      for (const m of hfLinears(arch)) {
        put(`${m.name}.weight`, [m.in, m.out]); // Conv1D: stored [in, out]
        put(`${m.name}.bias`, [m.out]);
      }
    }
  } finally {
    store.close();
  }
  return { dir, arch, config: bm.config, params };
}

/** Graph input name of a parameter. */
export const hfInputName = (param: string): string => param.replace(/\./g, '_');

// ---- building blocks ---------------------------------------------------------------------------

/** σ(x) as softmax([0, x])[1] (stable, exact gradient through Softmax). */
export function sigmoid(t: Tape, x: V): V {
  const s = [...x.shape, 1];
  const x1 = t.reshape(x, s);
  const z = t.expand(t.scalar(0, x.dtype), s);
  return t.reshape(t.slice(t.softmax(t.concat([z, x1], -1), -1), [1], [2], [-1]), [...x.shape]);
}

export const silu = (t: Tape, x: V): V => t.mul(x, sigmoid(t, x));

/** gelu_new: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) = x·σ(2u). */
export function geluNew(t: Tape, x: V): V {
  const u = t.add(x, t.scale(t.pow(x, 3), 0.044715));
  return t.mul(x, sigmoid(t, t.scale(u, 2 * Math.sqrt(2 / Math.PI))));
}

export function rmsNorm(t: Tape, x: V, w: V, eps: number): V {
  const ms = t.reduceMean(t.mul(x, x), [-1], true);
  return t.mul(t.div(x, t.sqrt(t.add(ms, t.scalar(eps, x.dtype)))), w);
}

export function layerNorm(t: Tape, x: V, w: V, b: V, eps: number): V {
  const xc = t.sub(x, t.reduceMean(x, [-1], true));
  const v = t.reduceMean(t.mul(xc, xc), [-1], true);
  return t.add(t.mul(t.div(xc, t.sqrt(t.add(v, t.scalar(eps, x.dtype)))), w), b);
}

/** cos/sin tables [T, hd] (HF: emb = cat(freqs, freqs)) and rotate_half as a signed permutation matrix. */
export function ropeTables(T: number, hd: number, theta: number): { cos: Float64Array; sin: Float64Array; rot: Float64Array } {
  const cos = new Float64Array(T * hd), sin = new Float64Array(T * hd), half = hd / 2;
  for (let p = 0; p < T; p++)
    for (let i = 0; i < hd; i++) {
      const f = p * (1 / theta ** ((2 * (i % half)) / hd));
      cos[p * hd + i] = Math.cos(f);
      sin[p * hd + i] = Math.sin(f);
    }
  // rotate_half(x) = cat(−x2, x1) = x · R,  R[j + half, j] = −1, R[j, j + half] = 1
  const rot = new Float64Array(hd * hd);
  for (let j = 0; j < half; j++) {
    rot[(j + half) * hd + j] = -1;
    rot[j * hd + j + half] = 1;
  }
  return { cos, sin, rot };
}

export interface ForwardInputs {
  /** int64 [B, T]. */
  ids: V;
  /** float [B, T], 1 = real token (optional: all real). */
  attn?: V;
}

/**
 * Logits [B·T, vocab]. `w` maps parameter names (graph layout, see loadHfModel) and LoRA factors
 * (`<module>.lora_{A,B}.weight`) to tape values; LoRA applies to modules in `lora.modules`.
 */
export function hfForward(t: Tape, a: HfArch, w: Record<string, V>, inp: ForwardInputs, lora?: { spec: HfLoraSpec; modules: string[] }): V {
  const [B, T] = inp.ids.shape, N = B * T, H = a.hidden, hd = a.headDim, nh = a.heads, nkv = a.kvHeads, rep = nh / nkv;
  const s = lora ? loraScaling(lora.spec) : 0;
  const loraSet = new Set(lora?.modules ?? []);
  const lin = (x: V, mod: string): V => {
    let y = t.matmul(x, w[`${mod}.weight`]);
    if (w[`${mod}.bias`]) y = t.add(y, w[`${mod}.bias`]);
    if (loraSet.has(mod)) {
      const xa = t.matmul(x, t.transpose(w[`${mod}.lora_A.weight`]));
      y = t.add(y, t.scale(t.matmul(xa, t.transpose(w[`${mod}.lora_B.weight`])), s));
    }
    return y;
  };
  // additive attention bias [B, 1, 1, T, T]: causal + padded keys
  const causal = new Float64Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) causal[i * T + j] = -1e9;
  let bias = t.constant(causal, [T, T]);
  if (inp.attn) bias = t.add(bias, t.scale(t.sub(t.reshape(inp.attn, [B, 1, 1, 1, T]), t.scalar(1)), 1e9));
  const rope = a.kind === 'llama' ? ropeTables(T, hd, a.ropeTheta) : undefined;
  const cos = rope && t.constant(rope.cos, [T, hd]), sin = rope && t.constant(rope.sin, [T, hd]), rot = rope && t.constant(rope.rot, [hd, hd]);
  const applyRope = (x: V): V => (rope ? t.add(t.mul(x, cos!), t.mul(t.matmul(x, rot!), sin!)) : x);
  const attention = (q2: V, k2: V, v2: V): V => {
    // q → [B, nkv, rep, T, hd]; k, v → [B, nkv, 1, T, hd] (GQA by broadcasting; HF repeat_kv order)
    const q = applyRope(t.transpose(t.reshape(q2, [B, T, nkv, rep, hd]), [0, 2, 3, 1, 4]));
    const k = applyRope(t.transpose(t.reshape(k2, [B, T, nkv, 1, hd]), [0, 2, 3, 1, 4]));
    const v = t.transpose(t.reshape(v2, [B, T, nkv, 1, hd]), [0, 2, 3, 1, 4]);
    const sc = t.add(t.scale(t.matmul(q, t.mT(k)), 1 / Math.sqrt(hd)), bias);
    const ctx = t.matmul(t.softmax(sc, -1), v);
    return t.reshape(t.transpose(ctx, [0, 3, 1, 2, 4]), [N, nh * hd]);
  };
  let h: V;
  if (a.kind === 'llama') {
    h = t.reshape(t.gather(w['model.embed_tokens.weight'], inp.ids), [N, H]);
    for (let l = 0; l < a.layers; l++) {
      const p = `model.layers.${l}`;
      const x = rmsNorm(t, h, w[`${p}.input_layernorm.weight`], a.eps);
      const o = attention(lin(x, `${p}.self_attn.q_proj`), lin(x, `${p}.self_attn.k_proj`), lin(x, `${p}.self_attn.v_proj`));
      h = t.add(h, lin(o, `${p}.self_attn.o_proj`));
      const x2 = rmsNorm(t, h, w[`${p}.post_attention_layernorm.weight`], a.eps);
      h = t.add(h, lin(t.mul(silu(t, lin(x2, `${p}.mlp.gate_proj`)), lin(x2, `${p}.mlp.up_proj`)), `${p}.mlp.down_proj`));
    }
    h = rmsNorm(t, h, w['model.norm.weight'], a.eps);
  } else {
    if (T > a.maxPositions) throw new Error(`sequence length ${T} > n_positions ${a.maxPositions}`);
    const pos = t.slice(w['transformer.wpe.weight'], [0], [T], [0]);
    h = t.reshape(t.add(t.gather(w['transformer.wte.weight'], inp.ids), pos), [N, H]);
    for (let l = 0; l < a.layers; l++) {
      const p = `transformer.h.${l}`;
      const x = layerNorm(t, h, w[`${p}.ln_1.weight`], w[`${p}.ln_1.bias`], a.eps);
      const qkv = lin(x, `${p}.attn.c_attn`);
      const part = (i: number): V => t.slice(qkv, [i * H], [(i + 1) * H], [1]);
      h = t.add(h, lin(attention(part(0), part(1), part(2)), `${p}.attn.c_proj`));
      const x2 = layerNorm(t, h, w[`${p}.ln_2.weight`], w[`${p}.ln_2.bias`], a.eps);
      h = t.add(h, lin(geluNew(t, lin(x2, `${p}.mlp.c_fc`)), `${p}.mlp.c_proj`));
    }
    h = layerNorm(t, h, w['transformer.ln_f.weight'], w['transformer.ln_f.bias'], a.eps);
  }
  return t.matmul(h, w['lm_head.weight']);
}

/** −Σ w[n] · log p(label[n]) of logits [N, V] (labels int64 [N], weights float [N]). */
export function weightedLmLoss(t: Tape, logits: V, labels: V, weights: V): V {
  const C = logits.shape[logits.shape.length - 1];
  const picked = t.reduceSum(t.mul(t.logSoftmax(logits, -1), t.oneHot(labels, C, logits.dtype)), [-1]);
  return t.neg(t.reduceSum(t.mul(picked, weights)));
}
