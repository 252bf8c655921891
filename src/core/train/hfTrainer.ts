/**
 * LoRA / BaLoRA fine-tuning of Hugging Face causal LMs (Llama family, GPT-2; hf.ts) on a text
 * dataset (data.ts) with onnxruntime-node: one `session.run` = forward + backward + AdamW (optim.ts)
 * over the LoRA factors, base frozen (fed once as graph inputs). BaLoRA applies the balanced-manifold
 * projection (balance.ts) after every optimizer step; Adam moments are NOT transformed.
 *
 * Adapters are saved as PEFT folders (adapter_config.json + adapter_model.safetensors with
 * `base_model.model.<module>.lora_{A,B}.weight`, A [r, in], B [out, r], task_type CAUSAL_LM,
 * fan_in_fan_out for GPT-2) into NEW folders only.
 *
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
import type { Float, ParamSet } from './models';
import { balanceGap, balanceProject, kappa, toMat } from './balance';
import { readSafetensorsFile } from './trainer';
import {
  HfArch, HfLinear, HfLoraSpec, HfModel, hfForward, hfInputName, initHfLora, loadHfModel, loraModules, weightedLmLoss, LLAMA_TARGETS, GPT2_TARGETS,
} from './hf';
import { LmBatch, PackedData, batchIndices, loadPackedDataset, loadTokenizer, makeBatch } from './data';

type Tensor = ortTypes.Tensor;

export type HfTrainMode = 'lora' | 'balora';

export interface HfTrainerOptions {
  /** Model folder or an already loaded model (its dtype must match `dtype`). */
  model: string | HfModel;
  spec: HfLoraSpec;
  mode?: HfTrainMode;
  lr?: number;
  adam?: Partial<AdamWConfig>;
  batchSize: number;
  seqLen: number;
  seed?: number;
  provider?: ExecutionProvider;
  dtype?: FloatType;
  threads?: number;
  /** Initial LoRA factors (`<module>.lora_{A,B}.weight`); PEFT init when absent. */
  loraInit?: ParamSet;
  /** Balance gap / κ every this many steps (default 1; 0 = never). */
  metricsEvery?: number;
}

export interface HfStepInfo {
  step: number;
  loss: number;
  ms: number;
  /** Max over modules (after the projection for BaLoRA). */
  balanceGap?: number;
  kappaA?: number;
  kappaB?: number;
}

const cloneData = (d: ArrayLike<number>, dtype: FloatType): Float => (dtype === 'float32' ? Float32Array.from(d) : Float64Array.from(d));

/** Default targets: attention q/v (Llama), c_attn (GPT-2). */
export const defaultTargets = (a: HfArch): string[] => (a.kind === 'llama' ? ['q_proj', 'v_proj'] : ['c_attn']);
export const supportedTargets = (a: HfArch): string[] => (a.kind === 'llama' ? LLAMA_TARGETS : GPT2_TARGETS);

export class HfTrainer {
  readonly engine: Engine;
  readonly dtype: FloatType;
  readonly model: HfModel;
  readonly modules: HfLinear[];
  readonly loraNames: string[];
  step = 0;
  private readonly base: Record<string, Tensor> = {};
  private lora: Record<string, Tensor> = {};
  private m: Record<string, Tensor> = {};
  private v: Record<string, Tensor> = {};
  private readonly adam: AdamWConfig;
  private session?: ortTypes.InferenceSession;

  private constructor(readonly opts: HfTrainerOptions) {
    this.dtype = opts.dtype ?? 'float32';
    this.engine = new Engine({ provider: opts.provider ?? 'cpu', intraOpThreads: opts.threads ?? 4 });
    this.adam = { ...ADAMW_DEFAULTS, weightDecay: 0, ...opts.adam };
    this.model = typeof opts.model === 'string' ? loadHfModel(opts.model, this.dtype) : opts.model;
    this.modules = loraModules(this.model.arch, opts.spec);
    const init = opts.loraInit ?? initHfLora(this.modules, opts.spec.r, opts.seed ?? 0, this.dtype);
    this.loraNames = this.modules.flatMap((m) => [`${m.name}.lora_A.weight`, `${m.name}.lora_B.weight`]);
    for (const [n, p] of Object.entries(this.model.params)) this.base[n] = this.tensor(p.data instanceof (this.dtype === 'float32' ? Float32Array : Float64Array) ? p.data : cloneData(p.data, this.dtype), p.shape);
    const r = opts.spec.r;
    for (const m of this.modules)
      for (const [n, shape] of [[`${m.name}.lora_A.weight`, [r, m.in]], [`${m.name}.lora_B.weight`, [m.out, r]]] as const) {
        const p = init[n];
        if (!p) throw new Error(`loraInit has no "${n}"`);
        if (p.data.length !== shape[0] * shape[1]) throw new Error(`loraInit "${n}" has ${p.data.length} values, expected [${shape}]`);
        this.lora[n] = this.tensor(cloneData(p.data, this.dtype), [...shape]);
        this.m[n] = this.tensor(cloneData(new Float64Array(p.data.length), this.dtype), [...shape]);
        this.v[n] = this.tensor(cloneData(new Float64Array(p.data.length), this.dtype), [...shape]);
      }
  }

  static async create(opts: HfTrainerOptions): Promise<HfTrainer> {
    const t = new HfTrainer(opts);
    const a = t.model.arch;
    const key = `hftrain:${t.model.dir}:${a.kind}:${opts.batchSize}:${opts.seqLen}:${t.dtype}:${JSON.stringify(opts.spec)}:${JSON.stringify(t.adam)}`;
    t.session = await t.engine.session(key, () => t.buildStepGraph());
    return t;
  }

  get provider(): { requested: ExecutionProvider; used: ExecutionProvider; reason?: string } {
    return { requested: this.opts.provider ?? 'cpu', used: this.engine.provider, reason: this.engine.fallbackReason };
  }

  private tensor(data: Float, shape: number[]): Tensor {
    return data instanceof Float32Array ? this.engine.tensor('float32', data, shape) : this.engine.tensor('float64', data as Float64Array, shape);
  }

  private graphInputs(t: Tape, B: number, T: number): { w: Record<string, V>; ids: V; attn: V; labels: V; weights: V } {
    const ids = t.input('ids', [B, T], 'int64'), attn = t.input('attn', [B, T]);
    const labels = t.input('labels', [B * T], 'int64'), weights = t.input('weights', [B * T]);
    const w: Record<string, V> = {};
    for (const [n, p] of Object.entries(this.model.params)) w[n] = t.input(hfInputName(n), p.shape);
    for (const n of this.loraNames) w[n] = t.input(hfInputName(n), [...this.lora[n].dims]);
    return { w, ids, attn, labels, weights };
  }

  private get loraArg(): { spec: HfLoraSpec; modules: string[] } {
    return { spec: this.opts.spec, modules: this.modules.map((m) => m.name) };
  }

  /** ONNX model of one training step (forward + backward + AdamW on the LoRA factors). */
  buildStepGraph(): Uint8Array {
    const t = new Tape('hf_train_step', this.dtype);
    const { w, ids, attn, labels, weights } = this.graphInputs(t, this.opts.batchSize, this.opts.seqLen);
    const step = t.input('step', []), lr = t.input('lr', []);
    const logits = hfForward(t, this.model.arch, w, { ids, attn }, this.loraArg);
    const loss = weightedLmLoss(t, logits, labels, weights);
    t.output(loss, 'loss');
    const grads = t.grad(loss, this.loraNames.map((n) => w[n]));
    const opt = new AdamWGraph(t, this.adam, step, lr);
    this.loraNames.forEach((n, i) => {
      const k = hfInputName(n);
      const u = opt.update(w[n], grads[i], t.input(`m_${k}`, [...this.lora[n].dims]), t.input(`v_${k}`, [...this.lora[n].dims]));
      t.output(u.p, `new_${k}`);
      t.output(u.m, `new_m_${k}`);
      t.output(u.v, `new_v_${k}`);
    });
    return t.build();
  }

  private batchFeeds(b: LmBatch): Record<string, Tensor> {
    const f = (d: Float64Array): Tensor => this.tensor(cloneData(d, this.dtype), [d.length]);
    return {
      ids: this.engine.tensor('int64', b.ids, [b.B, b.T]),
      attn: this.tensor(cloneData(b.attn, this.dtype), [b.B, b.T]),
      labels: this.engine.tensor('int64', b.labels, [b.B * b.T]),
      weights: f(b.weights),
      ...Object.fromEntries(Object.entries(this.base).map(([n, x]) => [hfInputName(n), x])),
      ...Object.fromEntries(Object.entries(this.lora).map(([n, x]) => [hfInputName(n), x])),
    };
  }

  /** One optimizer step on `batch` (B × seqLen as configured). */
  async trainStep(batch: LmBatch, lr = this.opts.lr ?? 1e-3): Promise<HfStepInfo> {
    if (batch.B !== this.opts.batchSize || batch.T !== this.opts.seqLen) throw new Error(`batch is ${batch.B}×${batch.T}, trainer expects ${this.opts.batchSize}×${this.opts.seqLen}`);
    const t0 = performance.now();
    this.step++;
    const s = (x: number): Tensor => this.tensor(cloneData([x], this.dtype), []);
    const feeds: Record<string, Tensor> = { ...this.batchFeeds(batch), step: s(this.step), lr: s(lr) };
    for (const n of this.loraNames) {
      feeds[`m_${hfInputName(n)}`] = this.m[n];
      feeds[`v_${hfInputName(n)}`] = this.v[n];
    }
    const out = await this.session!.run(feeds);
    for (const n of this.loraNames) {
      const k = hfInputName(n);
      this.lora[n] = out[`new_${k}`];
      this.m[n] = out[`new_m_${k}`];
      this.v[n] = out[`new_v_${k}`];
    }
    const info: HfStepInfo = { step: this.step, loss: Number((out.loss.data as Float)[0]), ms: 0 };
    if (this.opts.mode === 'balora') this.project();
    const every = this.opts.metricsEvery ?? 1;
    if (every > 0 && this.step % every === 0) Object.assign(info, this.metrics());
    info.ms = performance.now() - t0;
    return info;
  }

  /** BaLoRA projection of every (A, B) pair (fp64), moments untouched. */
  project(): void {
    const r = this.opts.spec.r;
    for (const m of this.modules) {
      const an = `${m.name}.lora_A.weight`, bn = `${m.name}.lora_B.weight`;
      const p = balanceProject(toMat(r, m.in, this.lora[an].data as Float), toMat(m.out, r, this.lora[bn].data as Float));
      this.lora[an] = this.tensor(cloneData(p.A.data, this.dtype), [r, m.in]);
      this.lora[bn] = this.tensor(cloneData(p.B.data, this.dtype), [m.out, r]);
    }
  }

  metrics(): { balanceGap: number; kappaA: number; kappaB: number } {
    const r = this.opts.spec.r;
    let g = 0, ka = 0, kb = 0;
    for (const m of this.modules) {
      const A = toMat(r, m.in, this.lora[`${m.name}.lora_A.weight`].data as Float), B = toMat(m.out, r, this.lora[`${m.name}.lora_B.weight`].data as Float);
      g = Math.max(g, balanceGap(A, B));
      ka = Math.max(ka, kappa(A));
      kb = Math.max(kb, kappa(B));
    }
    return { balanceGap: g, kappaA: ka, kappaB: kb };
  }

  /** Current LoRA factors (copies). */
  loraParams(): ParamSet {
    return Object.fromEntries(this.loraNames.map((n) => [n, { shape: [...this.lora[n].dims], data: cloneData(this.lora[n].data as Float, this.dtype) }]));
  }

  /**
   * Forward (and optionally backward) of the current adapted model on a batch of any shape:
   * logits [B·T·vocab] (fp64 copy), loss, and d loss / d LoRA factor when `grads`.
   */
  async evaluate(batch: LmBatch, o: { grads?: boolean; lora?: ParamSet } = {}): Promise<{ logits: Float64Array; loss: number; grads?: ParamSet }> {
    const key = `hfeval:${batch.B}:${batch.T}:${o.grads ? 1 : 0}`;
    const sess = await this.engine.session(key, () => {
      const t = new Tape('hf_eval', this.dtype);
      const { w, ids, attn, labels, weights } = this.graphInputs(t, batch.B, batch.T);
      const logits = hfForward(t, this.model.arch, w, { ids, attn }, this.loraArg);
      const loss = weightedLmLoss(t, logits, labels, weights);
      t.output(logits, 'logits');
      t.output(loss, 'loss');
      if (o.grads) t.grad(loss, this.loraNames.map((n) => w[n])).forEach((g, i) => t.output(g, `grad_${hfInputName(this.loraNames[i])}`));
      return t.build();
    });
    const feeds = this.batchFeeds(batch);
    if (o.lora) for (const n of this.loraNames) feeds[hfInputName(n)] = this.tensor(cloneData(o.lora[n].data, this.dtype), o.lora[n].shape);
    const out = await sess.run(feeds);
    const res: { logits: Float64Array; loss: number; grads?: ParamSet } = { logits: Float64Array.from(out.logits.data as Float), loss: Number((out.loss.data as Float)[0]) };
    if (o.grads) {
      res.grads = Object.fromEntries(this.loraNames.map((n) => {
        const g = out[`grad_${hfInputName(n)}`];
        return [n, { shape: [...g.dims], data: Float64Array.from(g.data as Float) }];
      }));
    }
    return res;
  }

  /** Saves the adapter as a NEW PEFT folder. */
  save(outDir: string, baseModelName?: string): string {
    return saveHfAdapter(outDir, { arch: this.model.arch, spec: this.opts.spec, modules: this.modules, params: this.loraParams(), modelDir: this.model.dir, baseModelName });
  }

  async dispose(): Promise<void> {
    await this.engine.dispose();
  }
}

/**
 * Writes a PEFT adapter folder (F32 factors). Refuses an existing `outDir` (written to a temporary
 * sibling and renamed). `base_model_name_or_path` defaults to the model folder relative to the adapter.
 */
export function saveHfAdapter(
  outDir: string,
  o: { arch: HfArch; spec: HfLoraSpec; modules: HfLinear[]; params: ParamSet; modelDir?: string; baseModelName?: string; extraConfig?: Record<string, unknown> },
): string {
  const dir = path.resolve(outDir);
  if (fs.existsSync(dir)) throw new Error(`${dir} already exists; adapters are only written to new folders`);
  const tensors = o.modules.flatMap((m) => (['lora_A', 'lora_B'] as const).map((f) => {
    const p = o.params[`${m.name}.${f}.weight`];
    if (!p) throw new Error(`saveHfAdapter: missing ${m.name}.${f}.weight`);
    const d = p.data instanceof Float32Array ? p.data : Float32Array.from(p.data);
    return { name: `base_model.model.${m.name}.${f}.weight`, dtype: 'F32' as const, shape: p.shape, data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
  }));
  const cfg = peftLoraConfig({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: o.baseModelName ?? (o.modelDir ? path.relative(dir, path.resolve(o.modelDir)) : ''),
    r: o.spec.r, lora_alpha: o.spec.alpha, target_modules: [...o.spec.targets], lora_dropout: 0, fan_in_fan_out: o.arch.kind === 'gpt2',
    bias: 'none', use_rslora: !!o.spec.useRslora, use_dora: false, init_lora_weights: true, modules_to_save: null, rank_pattern: {}, alpha_pattern: {},
    inference_mode: true, revision: null, ...o.extraConfig,
  });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp);
  try {
    fs.writeFileSync(path.join(tmp, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
    fs.writeFileSync(path.join(tmp, 'adapter_config.json'), JSON.stringify(cfg, null, 2) + '\n');
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return dir;
}

export interface TrainHfAdapterOptions {
  modelDir: string;
  /** Dataset file (.jsonl / .txt, tokenized with the model's tokenizer.json) or packed data. */
  data: string | PackedData;
  targets?: string[];
  r?: number;
  alpha?: number;
  useRslora?: boolean;
  mode?: HfTrainMode;
  lr?: number;
  steps: number;
  batchSize?: number;
  seqLen?: number;
  seed?: number;
  provider?: ExecutionProvider;
  dtype?: FloatType;
  threads?: number;
  adam?: Partial<AdamWConfig>;
  /** New folder for the PEFT adapter (not saved when absent, or when aborted before any step). */
  outDir?: string;
  baseModelName?: string;
  metricsEvery?: number;
  onStep?: (s: HfStepInfo) => void;
  signal?: AbortSignal;
}

export interface TrainHfAdapterResult {
  adapterDir?: string;
  losses: number[];
  steps: HfStepInfo[];
  provider: { requested: ExecutionProvider; used: ExecutionProvider; reason?: string };
  sequences: number;
  aborted: boolean;
}

/** Loads the model and data, trains `steps` steps (stops between steps on abort), saves the adapter. */
export async function trainHfAdapter(o: TrainHfAdapterOptions): Promise<TrainHfAdapterResult> {
  const dtype = o.dtype ?? 'float32';
  const model = loadHfModel(o.modelDir, dtype);
  const seqLen = o.seqLen ?? 64, batchSize = o.batchSize ?? 4;
  if (o.outDir && fs.existsSync(o.outDir)) throw new Error(`${path.resolve(o.outDir)} already exists; adapters are only written to new folders`);
  const data = typeof o.data === 'string' ? loadPackedDataset(o.data, loadTokenizer(o.modelDir), seqLen) : o.data;
  if (data.seqLen !== seqLen) throw new Error(`packed data has seqLen ${data.seqLen}, expected ${seqLen}`);
  let maxId = 0;
  for (let i = 0; i < data.ids.length; i++) if (data.ids[i] > maxId) maxId = data.ids[i];
  if (maxId >= model.arch.vocab) throw new Error(`token id ${maxId} ≥ model vocab_size ${model.arch.vocab} (tokenizer does not match the model?)`);
  const r = o.r ?? 8;
  const spec: HfLoraSpec = { targets: o.targets ?? defaultTargets(model.arch), r, alpha: o.alpha ?? 2 * r, useRslora: o.useRslora };
  const tr = await HfTrainer.create({
    model, spec, mode: o.mode ?? 'lora', lr: o.lr ?? 1e-3, adam: o.adam, batchSize, seqLen, seed: o.seed, provider: o.provider, dtype, threads: o.threads, metricsEvery: o.metricsEvery,
  });
  const steps: HfStepInfo[] = [];
  let aborted = false;
  try {
    for (let k = 0; k < o.steps; k++) {
      if (o.signal?.aborted) {
        aborted = true;
        break;
      }
      const s = await tr.trainStep(makeBatch(data, batchIndices(data.n, batchSize, k, o.seed ?? 0)));
      steps.push(s);
      o.onStep?.(s);
      if (k % 10 === 9) await new Promise((res) => setImmediate(res));
    }
    const adapterDir = o.outDir && steps.length ? tr.save(o.outDir, o.baseModelName) : undefined;
    return { adapterDir, losses: steps.map((s) => s.loss), steps, provider: tr.provider, sequences: data.n, aborted };
  } finally {
    await tr.dispose();
  }
}

/** Reads a PEFT adapter written by saveHfAdapter (F32/F64 factors) back as {spec, params, fanInFanOut}. */
export function loadHfAdapter(dir: string): { spec: HfLoraSpec; params: ParamSet; fanInFanOut: boolean; baseModel: string } {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as {
    r: number; lora_alpha: number; target_modules: string[]; use_rslora?: boolean; fan_in_fan_out?: boolean; base_model_name_or_path?: string;
  };
  const raw = readSafetensorsFile(path.join(dir, 'adapter_model.safetensors'));
  const params: ParamSet = {};
  for (const [k, v] of Object.entries(raw)) params[k.replace(/^base_model\.model\./, '')] = v;
  return {
    spec: { r: cfg.r, alpha: cfg.lora_alpha, targets: cfg.target_modules, useRslora: !!cfg.use_rslora }, params, fanInFanOut: !!cfg.fan_in_fan_out,
    baseModel: cfg.base_model_name_or_path ?? '',
  };
}
