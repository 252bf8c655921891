/**
 * Training loop on onnxruntime-node: one `session.run` = forward + backward + AdamW (optim.ts) for
 * the tiny transformer of models.ts. Modes:
 *   'full'   all base weights trainable (pre-training on modular addition),
 *   'lora'   base frozen, LoRA factors trainable,
 *   'balora' as 'lora', plus the balanced-manifold projection (balance.ts) after every optimizer step;
 *            Adam moments are NOT transformed (papers.md §1.3, as the authors' callback).
 *
 * Updated parameters and moments come back as ORT tensors and are fed straight into the next run.
 * `session.run` blocks the thread: in the extension, run this in a worker (src/worker).
 */
import { peftLoraConfig } from '../surgery/peftConfig';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as ortTypes from 'onnxruntime-node';
import { Engine, ExecutionProvider } from '../engine/ort';
import { encodeSafetensors } from '../formats/safetensors';
import { Tape, V, FloatType } from './autodiff';
import { AdamWConfig, AdamWGraph, ADAMW_DEFAULTS } from './optim';
import {
  Float, LoraSpec, ModData, ParamSet, SEQ_LEN, TinyTransformerConfig, baseShapes, forward, initBase, initLora, inputName, vocabSize,
} from './models';
import { balanceGap, balanceProject, kappa, toMat } from './balance';
import { Rng } from '../util/rng';

export type TrainMode = 'full' | 'lora' | 'balora';

export interface TrainerOptions {
  model: TinyTransformerConfig;
  mode: TrainMode;
  /** Base weights (random init with `seed` when absent). */
  base?: ParamSet;
  lora?: LoraSpec;
  /** Initial LoRA factors (PEFT init when absent). */
  loraInit?: ParamSet;
  lr: number;
  adam?: Partial<AdamWConfig>;
  batchSize: number;
  seed?: number;
  provider?: ExecutionProvider;
  dtype?: FloatType;
  threads?: number;
  /** Compute balance gap / κ every this many steps (LoRA modes; default 1, 0 = never). */
  metricsEvery?: number;
  /** Resume from getState(). */
  resume?: TrainState;
}

export interface ModuleMetrics {
  balanceGap: number;
  kappaA: number;
  kappaB: number;
}

export interface StepInfo {
  step: number;
  loss: number;
  /** Max over LoRA modules (after the projection for BaLoRA). */
  balanceGap?: number;
  kappaA?: number;
  kappaB?: number;
  modules?: Record<string, ModuleMetrics>;
  ms: number;
}

export interface TrainState {
  step: number;
  params: ParamSet;
  m: ParamSet;
  v: ParamSet;
}

type Tensor = ortTypes.Tensor;

function cloneData(d: ArrayLike<number>, dtype: FloatType): Float {
  return dtype === 'float32' ? Float32Array.from(d) : Float64Array.from(d);
}

export class Trainer {
  readonly engine: Engine;
  readonly dtype: FloatType;
  readonly trainable: string[];
  readonly frozen: string[];
  readonly spec?: LoraSpec;
  step = 0;
  private readonly shapes: Record<string, number[]> = {};
  private params: Record<string, Tensor> = {};
  private m: Record<string, Tensor> = {};
  private v: Record<string, Tensor> = {};
  private readonly adam: AdamWConfig;
  private session?: ortTypes.InferenceSession;
  private readonly key: string;
  private tokBuf: BigInt64Array;
  private labBuf: BigInt64Array;

  private constructor(readonly opts: TrainerOptions) {
    this.dtype = opts.dtype ?? 'float32';
    this.engine = new Engine({ provider: opts.provider ?? 'cpu', intraOpThreads: opts.threads ?? 2 });
    this.adam = { ...ADAMW_DEFAULTS, ...(opts.mode === 'full' ? {} : { weightDecay: 0 }), ...opts.adam };
    const seed = opts.seed ?? 0;
    const base = opts.base ?? initBase(opts.model, seed, this.dtype);
    for (const [n, s] of Object.entries(baseShapes(opts.model))) this.shapes[n] = s;
    const all: ParamSet = { ...base };
    if (opts.mode !== 'full') {
      if (!opts.lora) throw new Error(`mode ${opts.mode} needs a LoRA spec`);
      this.spec = opts.lora;
      Object.assign(all, opts.loraInit ?? initLora(opts.model, opts.lora, seed, this.dtype));
      this.trainable = Object.keys(all).filter((n) => n.includes('.lora_'));
      for (const n of this.trainable) this.shapes[n] = all[n].shape;
    } else this.trainable = Object.keys(base);
    this.frozen = Object.keys(all).filter((n) => !this.trainable.includes(n));
    const st = opts.resume;
    if (st) {
      this.step = st.step;
      for (const n of Object.keys(st.params)) all[n] = st.params[n];
    }
    for (const [n, p] of Object.entries(all)) this.params[n] = this.tensor(cloneData(p.data, this.dtype), p.shape);
    for (const n of this.trainable) {
      const sz = all[n].data.length;
      this.m[n] = this.tensor(st ? cloneData(st.m[n].data, this.dtype) : cloneData(new Float64Array(sz), this.dtype), all[n].shape);
      this.v[n] = this.tensor(st ? cloneData(st.v[n].data, this.dtype) : cloneData(new Float64Array(sz), this.dtype), all[n].shape);
    }
    const c = opts.model;
    this.key = `train:${opts.mode}:${c.p}:${c.dModel}:${c.depth}:${c.attnScale}:${opts.batchSize}:${this.dtype}:${JSON.stringify(opts.lora)}:${JSON.stringify(this.adam)}`;
    this.tokBuf = new BigInt64Array(opts.batchSize * SEQ_LEN);
    this.labBuf = new BigInt64Array(opts.batchSize);
  }

  static async create(opts: TrainerOptions): Promise<Trainer> {
    const t = new Trainer(opts);
    t.session = await t.engine.session(t.key, () => t.buildStepGraph());
    return t;
  }

  /** Provider actually used (after fallback) and why the requested one was not. */
  get provider(): { requested: ExecutionProvider; used: ExecutionProvider; reason?: string } {
    return { requested: this.opts.provider ?? 'cpu', used: this.engine.provider, reason: this.engine.fallbackReason };
  }

  private tensor(data: Float, shape: number[]): Tensor {
    return data instanceof Float32Array ? this.engine.tensor('float32', data, shape) : this.engine.tensor('float64', data as Float64Array, shape);
  }

  /** The ONNX model of one training step (exposed for inspection/benchmarks). */
  buildStepGraph(): Uint8Array {
    const t = new Tape('train_step', this.dtype);
    const B = this.opts.batchSize;
    const tokens = t.input('tokens', [B, SEQ_LEN], 'int64');
    const labels = t.input('labels', [B], 'int64');
    const step = t.input('step', []);
    const lr = t.input('lr', []);
    const w: Record<string, V> = {};
    for (const n of [...this.frozen, ...this.trainable]) w[n] = t.input(inputName(n), this.shapes[n]);
    const logits = forward(t, this.opts.model, w, tokens, this.spec);
    const loss = t.crossEntropy(logits, labels);
    t.output(loss, 'loss');
    const grads = t.grad(loss, this.trainable.map((n) => w[n]));
    const opt = new AdamWGraph(t, this.adam, step, lr);
    this.trainable.forEach((n, i) => {
      const m = t.input(`m_${inputName(n)}`, this.shapes[n]);
      const v = t.input(`v_${inputName(n)}`, this.shapes[n]);
      // no weight decay on biases / embeddings' positional table is still decayed (torch default: all)
      const u = opt.update(w[n], grads[i], m, v);
      t.output(u.p, `new_${inputName(n)}`);
      t.output(u.m, `new_m_${inputName(n)}`);
      t.output(u.v, `new_v_${inputName(n)}`);
    });
    return t.build();
  }

  private fillBatch(data: ModData, k: number): void {
    const B = this.opts.batchSize;
    if (B > data.n) throw new Error(`batch ${B} > ${data.n} examples`);
    if (B === data.n) {
      this.tokBuf.set(data.tokens);
      this.labBuf.set(data.labels);
      return;
    }
    // deterministic per (seed, step) → resumable; partial Fisher–Yates without replacement
    const rng = new Rng(((this.opts.seed ?? 0) * 1000003 + k) >>> 0);
    const idx = new Int32Array(data.n);
    for (let i = 0; i < data.n; i++) idx[i] = i;
    for (let i = 0; i < B; i++) {
      const j = i + Math.floor(rng.uniform() * (data.n - i));
      const tmp = idx[i]; idx[i] = idx[j]; idx[j] = tmp;
      const e = idx[i];
      for (let s = 0; s < SEQ_LEN; s++) this.tokBuf[i * SEQ_LEN + s] = data.tokens[e * SEQ_LEN + s];
      this.labBuf[i] = data.labels[e];
    }
  }

  /** One optimizer step on the batch drawn for the current step index. */
  async trainStep(data: ModData, lr = this.opts.lr): Promise<StepInfo> {
    const t0 = performance.now();
    this.fillBatch(data, this.step);
    this.step++;
    const scalar = (x: number): Tensor => this.tensor(cloneData([x], this.dtype), []);
    const feeds: Record<string, Tensor> = {
      tokens: this.engine.tensor('int64', this.tokBuf, [this.opts.batchSize, SEQ_LEN]),
      labels: this.engine.tensor('int64', this.labBuf, [this.opts.batchSize]),
      step: scalar(this.step),
      lr: scalar(lr),
    };
    for (const [n, p] of Object.entries(this.params)) feeds[inputName(n)] = p;
    for (const n of this.trainable) {
      feeds[`m_${inputName(n)}`] = this.m[n];
      feeds[`v_${inputName(n)}`] = this.v[n];
    }
    const out = await this.session!.run(feeds);
    for (const n of this.trainable) {
      const k = inputName(n);
      this.params[n] = out[`new_${k}`];
      this.m[n] = out[`new_m_${k}`];
      this.v[n] = out[`new_v_${k}`];
    }
    const info: StepInfo = { step: this.step, loss: Number((out.loss.data as Float)[0]), ms: 0 };
    if (this.opts.mode === 'balora') this.project();
    const every = this.opts.metricsEvery ?? 1;
    if (this.spec && every > 0 && this.step % every === 0) Object.assign(info, this.metrics());
    info.ms = performance.now() - t0;
    return info;
  }

  /** BaLoRA: balanced-manifold projection of every LoRA pair (fp64), moments untouched. */
  project(): void {
    if (!this.spec) return;
    const r = this.spec.r;
    for (const mod of this.spec.targets) {
      const a = this.params[`${mod}.lora_A.weight`], b = this.params[`${mod}.lora_B.weight`];
      const A = toMat(r, a.dims[1], a.data as Float), Bm = toMat(b.dims[0], r, b.data as Float);
      const p = balanceProject(A, Bm);
      this.params[`${mod}.lora_A.weight`] = this.tensor(cloneData(p.A.data, this.dtype), [...a.dims]);
      this.params[`${mod}.lora_B.weight`] = this.tensor(cloneData(p.B.data, this.dtype), [...b.dims]);
    }
  }

  metrics(): { balanceGap: number; kappaA: number; kappaB: number; modules: Record<string, ModuleMetrics> } {
    const modules: Record<string, ModuleMetrics> = {};
    let g = 0, ka = 0, kb = 0;
    const r = this.spec!.r;
    for (const mod of this.spec!.targets) {
      const a = this.params[`${mod}.lora_A.weight`], b = this.params[`${mod}.lora_B.weight`];
      const A = toMat(r, a.dims[1], a.data as Float), Bm = toMat(b.dims[0], r, b.data as Float);
      const mm = { balanceGap: balanceGap(A, Bm), kappaA: kappa(A), kappaB: kappa(Bm) };
      modules[mod] = mm;
      g = Math.max(g, mm.balanceGap); ka = Math.max(ka, mm.kappaA); kb = Math.max(kb, mm.kappaB);
    }
    return { balanceGap: g, kappaA: ka, kappaB: kb, modules };
  }

  /** Runs `steps` more steps; stops early (between steps) when `signal` aborts. */
  async train(data: ModData, o: { steps: number; onStep?: (s: StepInfo) => void; signal?: AbortSignal; lr?: (step: number) => number; yieldEvery?: number }): Promise<StepInfo[]> {
    const log: StepInfo[] = [];
    const ye = o.yieldEvery ?? 10;
    for (let i = 0; i < o.steps; i++) {
      if (o.signal?.aborted) break;
      const s = await this.trainStep(data, o.lr ? o.lr(this.step) : this.opts.lr);
      log.push(s);
      o.onStep?.(s);
      if (ye > 0 && i % ye === ye - 1) await new Promise((res) => setImmediate(res));
    }
    return log;
  }

  /** Current parameters (all: base + LoRA) as plain arrays. */
  parameters(): ParamSet {
    const out: ParamSet = {};
    for (const [n, p] of Object.entries(this.params)) out[n] = { shape: [...p.dims], data: cloneData(p.data as Float, this.dtype) };
    return out;
  }

  getState(): TrainState {
    const pick = (src: Record<string, Tensor>): ParamSet =>
      Object.fromEntries(this.trainable.map((n) => [n, { shape: [...src[n].dims], data: cloneData(src[n].data as Float, this.dtype) }]));
    return { step: this.step, params: pick(this.params), m: pick(this.m), v: pick(this.v) };
  }

  /** Mean loss and accuracy on a data set (forward-only graph, fixed batch, last chunk padded). */
  async evaluate(data: ModData, batch = 1024): Promise<{ loss: number; acc: number }> {
    const { logits } = await predict(this.engine, this.opts.model, this.parameters(), data.tokens, data.n, this.spec, this.dtype, batch);
    const V = vocabSize(this.opts.model);
    let loss = 0, ok = 0;
    for (let i = 0; i < data.n; i++) {
      const row = logits.subarray(i * V, (i + 1) * V);
      let mx = -Infinity, am = 0;
      for (let j = 0; j < V; j++) if (row[j] > mx) { mx = row[j]; am = j; }
      let se = 0;
      for (let j = 0; j < V; j++) se += Math.exp(row[j] - mx);
      const y = Number(data.labels[i]);
      loss += mx + Math.log(se) - row[y];
      if (am === y) ok++;
    }
    return { loss: loss / data.n, acc: ok / data.n };
  }

  saveAdapter(dir: string, baseModelPath = ''): void {
    if (!this.spec) throw new Error('saveAdapter: not a LoRA trainer');
    saveAdapter(dir, this.spec, this.parameters(), baseModelPath);
  }

  saveBase(dir: string): void {
    saveBase(dir, this.opts.model, this.parameters());
  }

  async dispose(): Promise<void> {
    await this.engine.dispose();
  }
}

/** Logits [n, vocab] (fp64 copy) of a model with optional unmerged LoRA factors in `params`. */
export async function predict(
  engine: Engine, c: TinyTransformerConfig, params: ParamSet, tokens: BigInt64Array, n: number, spec?: LoraSpec, dtype: FloatType = 'float32', batch = 1024,
): Promise<{ logits: Float64Array }> {
  const Bsz = Math.min(batch, n);
  const names = Object.keys(params).filter((k) => spec || !k.includes('.lora_')).sort();
  const key = `eval:${c.p}:${c.dModel}:${c.depth}:${c.attnScale}:${Bsz}:${dtype}:${JSON.stringify(spec)}:${names.join(',')}`;
  const sess = await engine.session(key, () => {
    const t = new Tape('eval', dtype);
    const tok = t.input('tokens', [Bsz, SEQ_LEN], 'int64');
    const w: Record<string, V> = {};
    for (const k of names) w[k] = t.input(inputName(k), params[k].shape);
    t.output(forward(t, c, w, tok, spec), 'logits');
    return t.build();
  });
  const feeds: Record<string, Tensor> = {};
  for (const k of names) {
    const d = dtype === 'float32' ? Float32Array.from(params[k].data) : Float64Array.from(params[k].data);
    feeds[inputName(k)] = d instanceof Float32Array ? engine.tensor('float32', d, params[k].shape) : engine.tensor('float64', d, params[k].shape);
  }
  const V = vocabSize(c);
  const out = new Float64Array(n * V);
  const buf = new BigInt64Array(Bsz * SEQ_LEN);
  for (let s = 0; s < n; s += Bsz) {
    const cnt = Math.min(Bsz, n - s);
    buf.fill(0n);
    buf.set(tokens.subarray(s * SEQ_LEN, (s + cnt) * SEQ_LEN));
    feeds.tokens = engine.tensor('int64', buf, [Bsz, SEQ_LEN]);
    const r = await sess.run(feeds);
    out.set((r.logits.data as Float).subarray(0, cnt * V), s * V);
  }
  return { logits: out };
}

// ---- files ---------------------------------------------------------------------------------

function tensorBytes(d: Float): { dtype: 'F32' | 'F64'; data: Uint8Array } {
  return { dtype: d instanceof Float32Array ? 'F32' : 'F64', data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
}

/** PEFT folder: adapter_config.json + adapter_model.safetensors (lora_A [r,in], lora_B [out,r]). */
export function saveAdapter(dir: string, spec: LoraSpec, params: ParamSet, baseModelPath = ''): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = [];
  for (const m of spec.targets)
    for (const f of ['lora_A', 'lora_B']) {
      const p = params[`${m}.${f}.weight`];
      tensors.push({ name: `base_model.model.${m}.${f}.weight`, shape: p.shape, ...tensorBytes(p.data) });
    }
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  const cfg = peftLoraConfig({
    peft_type: 'LORA', task_type: null, base_model_name_or_path: baseModelPath, r: spec.r, lora_alpha: spec.alpha,
    target_modules: spec.targets, lora_dropout: 0, bias: 'none', fan_in_fan_out: false, use_rslora: false,
    init_lora_weights: true, inference_mode: true,
  });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg, null, 2));
}

export function saveBase(dir: string, c: TinyTransformerConfig, params: ParamSet): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = Object.keys(baseShapes(c)).map((n) => ({ name: n, shape: params[n].shape, ...tensorBytes(params[n].data) }));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  const cfg = { model_type: 'lora-lens-modular-attention', p: c.p, d_model: c.dModel, depth: c.depth, attn_scale: c.attnScale ?? 1 / Math.sqrt(c.dModel), vocab_size: vocabSize(c), seq_len: SEQ_LEN, n_heads: 1 };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
}

/** Minimal safetensors reader for F32/F64 files written above. */
export function readSafetensorsFile(file: string): ParamSet {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out: ParamSet = {};
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = buf.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]);
    const copy = new Uint8Array(bytes);
    if (h.dtype === 'F32') out[name] = { shape: h.shape, data: new Float32Array(copy.buffer) };
    else if (h.dtype === 'F64') out[name] = { shape: h.shape, data: new Float64Array(copy.buffer) };
    else throw new Error(`readSafetensorsFile: ${name} has dtype ${h.dtype}`);
  }
  return out;
}

export function loadAdapter(dir: string): { spec: LoraSpec; params: ParamSet } {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number; target_modules: string[] };
  const raw = readSafetensorsFile(path.join(dir, 'adapter_model.safetensors'));
  const params: ParamSet = {};
  for (const [k, v] of Object.entries(raw)) params[k.replace(/^base_model\.model\./, '')] = v;
  return { spec: { r: cfg.r, alpha: cfg.lora_alpha, targets: cfg.target_modules as LoraSpec['targets'] }, params };
}

export function loadBase(dir: string): { config: TinyTransformerConfig; params: ParamSet } {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { p: number; d_model: number; depth: number; attn_scale: number };
  return { config: { p: cfg.p, dModel: cfg.d_model, depth: cfg.depth, attnScale: cfg.attn_scale }, params: readSafetensorsFile(path.join(dir, 'model.safetensors')) };
}
