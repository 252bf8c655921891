/**
 * `training.run`: LoRA and BaLoRA side by side (interleaved step by step, same data order and init).
 *
 * Task `modular-subtraction` (papers.md §5.3): a tiny attention-only transformer pre-trained on
 * (x + y) mod p is fine-tuned to (x − y) mod p. The pre-trained base is read from `baseDir`, or
 * pre-trained once and written there (new folder) when missing. Cancellation stops between steps
 * and returns the resume state instead of throwing (the host offers Resume).
 *
 * Task `causal-lm`: a Hugging Face causal LM folder (Llama family / GPT-2) on a JSONL / text dataset
 * (hfTrainer.ts), 10 % of the packed sequences held out for the final evaluation (LoRA, BaLoRA and
 * the frozen base, i.e. B = 0). Cancellation stops between steps and returns `stopped` WITHOUT a
 * resume state (the ORT trainers' Adam moments are not exported) and saves nothing.
 *
 * Streams `TrainProgressData` through `progress(…, data)`: batched points (≥ 50 ms apart), phases and
 * the execution provider actually used. On completion both adapters are saved as PEFT folders into
 * `saveDirs` (refused if they exist).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError } from '../../core/util/cancel';
import { OutputExistsError } from '../../core/formats/writer';
import { batchIndices, loadPackedDataset, loadTokenizer, makeBatch, permutation, type PackedData } from '../../core/train/data';
import type { HfLoraSpec } from '../../core/train/hf';
import { loadHfModel } from '../../core/train/hf';
import { HfTrainer, defaultTargets, supportedTargets } from '../../core/train/hfTrainer';
import { LORA_TARGETS, modularData, type LoraSpec, type ParamSet, type TinyTransformerConfig } from '../../core/train/models';
import { Trainer, loadBase, type TrainState } from '../../core/train/trainer';
import {
  checkForm, type EvalResult, type ProviderName, type TrainForm, type TrainJobParams, type TrainJobResult, type TrainPoint, type TrainProgressData,
} from '../../shared/training';
import { Train } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

/** The built-in model: p = 23, d = 32, two shared attention layers (pre-trains to ~97 % in ~400 full-batch steps). */
export const TRAIN_MODEL: TinyTransformerConfig = { p: 23, dModel: 32, depth: 2 };
export const PRETRAIN_STEPS = 400;

const tick = (): Promise<void> => new Promise((res) => setImmediate(res));

async function ensureBase(baseDir: string, provider: ProviderName, ctx: JobContext<TrainProgressData>, send: (d: TrainProgressData) => void): Promise<{ config: TinyTransformerConfig; params: ParamSet; pretrained: boolean }> {
  if (fs.existsSync(path.join(baseDir, 'config.json')) && fs.existsSync(path.join(baseDir, 'model.safetensors'))) {
    const b = loadBase(baseDir);
    return { ...b, pretrained: false };
  }
  if (fs.existsSync(baseDir)) throw new OutputExistsError(baseDir);
  send({ kind: 'phase', phase: 'pretrain', message: `pre-training the base on (x + y) mod ${TRAIN_MODEL.p}` });
  const add = modularData(TRAIN_MODEL.p, '+', 1, 0).train;
  const full = await Trainer.create({ model: TRAIN_MODEL, mode: 'full', lr: 1e-2, batchSize: add.n, seed: 0, provider });
  try {
    for (let i = 0; i < PRETRAIN_STEPS; i++) {
      if (ctx.token.cancelled) throw new CancelledError();
      const s = await full.trainStep(add);
      if (i % 20 === 19) {
        ctx.progress(i + 1, PRETRAIN_STEPS, `pre-training base: step ${i + 1}/${PRETRAIN_STEPS}, loss ${s.loss.toFixed(3)}`);
        await tick();
      }
    }
    // Written as a temp folder then renamed, so a half-written base is never picked up.
    const tmp = `${baseDir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    full.saveBase(tmp);
    fs.renameSync(tmp, baseDir);
    return { config: TRAIN_MODEL, params: full.parameters(), pretrained: true };
  } finally {
    await full.dispose();
  }
}

function assertNew(dir: string): void {
  if (fs.existsSync(dir)) throw new OutputExistsError(dir);
}

/** Batches points and sends them at most every 50 ms (`flush(true)` sends what is left). */
function pointStream(ctx: JobContext<TrainProgressData>, form: TrainForm) {
  let pending: TrainPoint[] = [];
  let lastFlush = 0;
  const s = {
    done: 0,
    send: (d: TrainProgressData, msg = ''): void => ctx.progress(s.done, form.steps, msg, d),
    push: (pt: TrainPoint): void => { pending.push(pt); },
    flush: (force = false): void => {
      const now = performance.now();
      if (!pending.length || (!force && now - lastFlush < 50)) return;
      lastFlush = now;
      const pts = pending;
      pending = [];
      s.send({ kind: 'points', points: pts }, `step ${s.done}/${form.steps}`);
    },
  };
  return s;
}

export async function trainingJob(p: TrainJobParams, ctx: JobContext<TrainProgressData>): Promise<TrainJobResult> {
  const t0 = performance.now();
  const form = checkForm(p?.form);
  if (!p.saveDirs || typeof p.saveDirs.lora !== 'string' || typeof p.saveDirs.balora !== 'string') throw new Error('training.run: saveDirs are required');
  if (form.task === 'modular-subtraction' && typeof p.baseDir !== 'string') throw new Error('training.run: baseDir is required for modular-subtraction');
  const provider: ProviderName = p.provider === 'webgpu' || p.provider === 'cuda' ? p.provider : 'cpu';
  assertNew(p.saveDirs.lora);
  assertNew(p.saveDirs.balora);
  if (form.task === 'causal-lm') return causalLmJob(p, form, provider, ctx, t0);

  const ps = pointStream(ctx, form);
  const send = ps.send, flush = ps.flush;
  const baseDir = p.baseDir!;
  const base = await ensureBase(baseDir, provider, ctx, (d) => send(d, d.kind === 'phase' ? d.message : ''));
  const model = base.config;
  const spec: LoraSpec = { targets: LORA_TARGETS, r: form.r, alpha: form.alpha };
  const { train, test } = modularData(model.p, '-', 0.8, form.seed);
  const resume = p.resume as { lora: TrainState; balora: TrainState } | undefined;
  const mk = (mode: 'lora' | 'balora') => Trainer.create({
    model, mode, lora: spec, base: base.params, lr: form.lr, batchSize: train.n, seed: form.seed, provider, resume: resume?.[mode],
  });
  const lora = await mk('lora');
  const balora = await mk('balora');
  try {
    const prov = lora.provider;
    send({ kind: 'provider', requested: provider, used: prov.used as ProviderName, reason: prov.reason });
    send({ kind: 'phase', phase: 'train', message: `training LoRA and BaLoRA (r = ${form.r}, α = ${form.alpha}, lr = ${form.lr})` });
    ps.done = lora.step;
    let stopped = false;
    while (ps.done < form.steps) {
      if (ctx.token.cancelled) { stopped = true; break; }
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const s = await tr.trainStep(train);
        ps.push({ mode, step: s.step, loss: s.loss, balanceGap: s.balanceGap, kappaA: s.kappaA, kappaB: s.kappaB });
      }
      ps.done = lora.step;
      flush();
      if (ps.done % 5 === 0) await tick();
    }
    flush(true);
    const res: TrainJobResult = {
      task: form.task, stopped, step: ps.done, provider: { requested: provider, used: lora.provider.used as ProviderName, reason: lora.provider.reason },
      pretrained: base.pretrained, baseDir, ms: 0,
    };
    if (stopped) {
      res.resume = { lora: lora.getState(), balora: balora.getState() };
    } else {
      send({ kind: 'phase', phase: 'save', message: 'evaluating and saving adapters' });
      const baseEval = await evaluateBase(lora, test);
      res.eval = { lora: await lora.evaluate(test), balora: await balora.evaluate(test), base: baseEval };
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const dir = p.saveDirs[mode];
        assertNew(dir);
        const tmp = `${dir}.tmp-${process.pid}`;
        fs.rmSync(tmp, { recursive: true, force: true });
        tr.saveAdapter(tmp, path.relative(dir, baseDir) || '.');
        fs.renameSync(tmp, dir);
      }
      res.saved = { ...p.saveDirs };
    }
    res.ms = performance.now() - t0;
    return res;
  } finally {
    await lora.dispose();
    await balora.dispose();
  }
}

/** Held-out loss/accuracy of the frozen base on the new task (LoRA B = 0 at step 0 ⇒ same as no adapter). */
async function evaluateBase(tr: Trainer, test: ReturnType<typeof modularData>['test']): Promise<EvalResult> {
  const t = await Trainer.create({ ...tr.opts, resume: undefined });
  try {
    return await t.evaluate(test);
  } finally {
    await t.dispose();
  }
}

/** Rows `rows` of packed data as a new PackedData. */
function subset(d: PackedData, rows: ArrayLike<number>): PackedData {
  const T = d.seqLen, n = rows.length;
  const ids = new Int32Array(n * T), attn = new Uint8Array(n * T), loss = new Uint8Array(n * T);
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    ids.set(d.ids.subarray(r * T, (r + 1) * T), i * T);
    attn.set(d.attn.subarray(r * T, (r + 1) * T), i * T);
    loss.set(d.loss.subarray(r * T, (r + 1) * T), i * T);
  }
  return { n, seqLen: T, ids, attn, loss };
}

/** Held-out fraction of the packed sequences (at least one sequence; the rest trains). */
export const HOLDOUT = 0.1;
/** At most this many held-out sequences are evaluated. */
const MAX_EVAL_SEQS = 512;

/** Split of the packed sequences (seeded permutation): ~10 % held out, at least one on each side. */
export function splitPacked(d: PackedData, seed: number): { train: PackedData; test: PackedData } {
  if (d.n < 2) throw new Error(`the dataset packs into ${d.n} sequence(s) of ${d.seqLen} tokens; at least 2 are needed (10 % are held out): use more data or a shorter sequence length`);
  const perm = permutation(d.n, seed * 7919 + 17);
  const nTest = Math.max(1, Math.round(d.n * HOLDOUT));
  return { test: subset(d, perm.subarray(0, nTest)), train: subset(d, perm.subarray(nTest)) };
}

/**
 * Held-out loss (mean over target tokens) and next-token accuracy of `tr`'s current adapter, or of
 * the frozen base when `zeroB` (LoRA B = 0 ⇒ the adapter adds nothing).
 */
async function evaluateLm(tr: HfTrainer, test: PackedData, batchSize: number, zeroB = false): Promise<EvalResult> {
  let lora: ParamSet | undefined;
  if (zeroB) {
    lora = tr.loraParams();
    for (const [n, p] of Object.entries(lora)) if (n.endsWith('.lora_B.weight')) p.data.fill(0);
  }
  const n = Math.min(test.n, MAX_EVAL_SEQS);
  const V = tr.model.arch.vocab;
  let lossSum = 0, count = 0, correct = 0;
  for (let s = 0; s < n; s += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, n - s) }, (_, i) => s + i);
    const b = makeBatch(test, rows);
    if (!b.count) continue;
    const out = await tr.evaluate(b, { lora });
    lossSum += out.loss * b.count;
    count += b.count;
    for (let i = 0; i < b.weights.length; i++) {
      if (!(b.weights[i] > 0)) continue;
      let best = 0, bv = -Infinity;
      for (let v = 0, o = i * V; v < V; v++) if (out.logits[o + v] > bv) { bv = out.logits[o + v]; best = v; }
      if (BigInt(best) === b.labels[i]) correct++;
    }
    await tick();
  }
  if (!count) throw new Error('the held-out split has no target tokens');
  return { loss: lossSum / count, acc: correct / count };
}

async function causalLmJob(p: TrainJobParams, form: TrainForm, provider: ProviderName, ctx: JobContext<TrainProgressData>, t0: number): Promise<TrainJobResult> {
  if (p.resume) throw new Error('causal-lm runs cannot be resumed: start a new run');
  const modelDir = path.resolve(form.modelDir!), dataFile = path.resolve(form.dataFile!);
  const seqLen = form.seqLen!, batchSize = form.batchSize!;
  for (const f of ['config.json', 'tokenizer.json']) if (!fs.existsSync(path.join(modelDir, f))) throw new Error(`${modelDir} has no ${f} (a Hugging Face model folder is needed)`);
  if (!fs.existsSync(dataFile)) throw new Error(`dataset ${dataFile} not found`);
  const ps = pointStream(ctx, form);
  ps.send({ kind: 'phase', phase: 'train', message: `loading ${path.basename(modelDir)} and tokenizing ${path.basename(dataFile)}` });
  const model = loadHfModel(modelDir, 'float32');
  const packed = loadPackedDataset(dataFile, loadTokenizer(modelDir), seqLen);
  let maxId = 0;
  for (let i = 0; i < packed.ids.length; i++) if (packed.ids[i] > maxId) maxId = packed.ids[i];
  if (maxId >= model.arch.vocab) throw new Error(`token id ${maxId} ≥ model vocab_size ${model.arch.vocab} (tokenizer.json does not match the model?)`);
  const { train, test } = splitPacked(packed, form.seed);
  const supported = supportedTargets(model.arch);
  const targets = form.targets?.length ? form.targets : defaultTargets(model.arch);
  const bad = targets.filter((t) => !supported.includes(t));
  if (bad.length) throw new Error(`target module(s) ${bad.join(', ')} not supported for ${model.arch.kind}: use ${supported.join(', ')}`);
  const spec: HfLoraSpec = { targets, r: form.r, alpha: form.alpha };
  const mk = (mode: 'lora' | 'balora') => HfTrainer.create({ model, spec, mode, lr: form.lr, batchSize, seqLen, seed: form.seed, provider, dtype: 'float32', threads: 2, metricsEvery: 1 });
  const lora = await mk('lora');
  let balora: HfTrainer | undefined;
  try {
    balora = await mk('balora');
    const prov = lora.provider;
    ps.send({ kind: 'provider', requested: provider, used: prov.used as ProviderName, reason: prov.reason });
    ps.send({ kind: 'phase', phase: 'train', message: `training LoRA and BaLoRA on ${path.basename(modelDir)} (${targets.join(', ')}; r = ${form.r}, α = ${form.alpha}, lr = ${form.lr}; ${train.n} train / ${test.n} held-out sequences of ${seqLen} tokens)` });
    let stopped = false;
    while (ps.done < form.steps) {
      if (ctx.token.cancelled) { stopped = true; break; }
      const batch = makeBatch(train, batchIndices(train.n, batchSize, ps.done, form.seed));
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const s = await tr.trainStep(batch);
        ps.push({ mode, step: s.step, loss: s.loss, balanceGap: s.balanceGap, kappaA: s.kappaA, kappaB: s.kappaB });
      }
      ps.done = lora.step;
      ps.flush();
      await tick();
    }
    ps.flush(true);
    const res: TrainJobResult = {
      task: 'causal-lm', stopped, step: ps.done, provider: { requested: provider, used: lora.provider.used as ProviderName, reason: lora.provider.reason },
      pretrained: false, baseDir: modelDir, data: { train: train.n, test: test.n, seqLen }, ms: 0,
    };
    if (!stopped) {
      ps.send({ kind: 'phase', phase: 'save', message: `evaluating on ${Math.min(test.n, MAX_EVAL_SEQS)} held-out sequences and saving adapters` });
      res.eval = { lora: await evaluateLm(lora, test, batchSize), balora: await evaluateLm(balora, test, batchSize), base: await evaluateLm(lora, test, batchSize, true) };
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const dir = path.resolve(p.saveDirs[mode]);
        assertNew(dir);
        tr.save(dir, path.relative(dir, modelDir).split(path.sep).join('/') || '.');
      }
      res.saved = { ...p.saveDirs };
    }
    res.ms = performance.now() - t0;
    return res;
  } finally {
    await lora.dispose();
    await balora?.dispose();
  }
}

export const trainingHandlers: JobHandler[] = [handle(Train, trainingJob)];
