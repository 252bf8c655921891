/**
 * `training.run`: LoRA and BaLoRA side by side (interleaved step by step, same data order and init).
 *
 * Built-in tasks (presets in src/core/train/tasks.ts: `second-operand`, the default, and the research
 * preset `modular-subtraction`): a tiny attention-only transformer whose base is pre-trained once per
 * task (read from `baseDir`, or pre-trained and written there as a new folder when missing), then
 * LoRA and BaLoRA on `preset.data(seed)`, full batch, with the cosine learning-rate decay of
 * `lora-lens train-demo`. Held-out answer accuracy is measured every EVAL_EVERY steps and streamed
 * with the points. Cancellation stops between steps and returns the resume state instead of
 * throwing (the host offers Resume).
 *
 * Task `causal-lm`: a Hugging Face causal LM folder (Llama family / GPT-2) on a JSONL / text dataset
 * (hfTrainer.ts), 10 % of the packed sequences held out for the final evaluation (LoRA, BaLoRA and
 * the frozen base, i.e. B = 0). Cancellation stops between steps and returns `stopped` WITHOUT a
 * resume state (the ORT trainers' Adam moments are not exported) and saves nothing.
 *
 * Streams `TrainProgressData` through `progress(…, data)`: batched points (≥ 50 ms apart), phases and
 * the execution provider actually used. On completion both adapters are saved as PEFT folders into
 * `saveDirs` (refused if they exist), each with a `training_metrics.json` (METRIC_DEFINITIONS).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError } from '../../core/util/cancel';
import { OutputExistsError } from '../../core/formats/writer';
import { batchIndices, loadPackedDataset, loadTokenizer, makeBatch, permutation, type PackedData } from '../../core/train/data';
import type { HfLoraSpec } from '../../core/train/hf';
import { loadHfModel } from '../../core/train/hf';
import { HfTrainer, defaultTargets, supportedTargets } from '../../core/train/hfTrainer';
import { LORA_TARGETS, type LoraSpec, type ModData, type ParamSet, type TinyTransformerConfig } from '../../core/train/models';
import { TRAIN_TASKS as PRESETS, cosineLr, pretrainBase, type TrainTaskPreset } from '../../core/train/tasks';
import { Trainer, loadBase, saveBase, type TrainState } from '../../core/train/trainer';
import {
  checkForm, isBuiltinTask, METRIC_DEFINITIONS, type EvalResult, type ProviderName, type TrainForm, type TrainJobParams, type TrainJobResult, type TrainPoint, type TrainProgressData,
} from '../../shared/training';
import { Train } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

const tick = (): Promise<void> => new Promise((res) => setImmediate(res));

/** Held-out accuracy is measured (and charted) every this many steps, and after the last. */
export const EVAL_EVERY = 20;

/**
 * The task's pre-trained base from `baseDir`, or pre-trained now (pretrainBase of the preset) and
 * written there as a new folder. A base made for another model shape is refused.
 */
async function ensureBase(preset: TrainTaskPreset, baseDir: string, provider: ProviderName, ctx: JobContext<TrainProgressData>, send: (d: TrainProgressData) => void): Promise<{ config: TinyTransformerConfig; params: ParamSet; pretrained: boolean }> {
  if (fs.existsSync(path.join(baseDir, 'config.json')) && fs.existsSync(path.join(baseDir, 'model.safetensors'))) {
    const b = loadBase(baseDir);
    const m = preset.model;
    if (b.config.p !== m.p || b.config.dModel !== m.dModel || b.config.depth !== m.depth) {
      throw new Error(`${baseDir}: this base (p ${b.config.p}, d ${b.config.dModel}, depth ${b.config.depth}) is not the one of task "${preset.id}" (p ${m.p}, d ${m.dModel}, depth ${m.depth}); move the folder away to pre-train it again`);
    }
    return { ...b, pretrained: false };
  }
  if (fs.existsSync(baseDir)) throw new OutputExistsError(baseDir);
  const total = preset.pretrain.steps;
  send({ kind: 'phase', phase: 'pretrain', message: `Pre-training the base model (${preset.pretrain.what}), once for this task: ${total} steps` });
  const ac = new AbortController();
  const b = await pretrainBase(preset, {
    provider, signal: ac.signal,
    onProgress: (_phase, done, n, loss) => {
      if (ctx.token.cancelled) ac.abort();
      ctx.progress(done, n, `Pre-training the base model: step ${done} of ${n} (loss ${loss.toFixed(3)})`);
    },
  }).catch((e) => { if (ctx.token.cancelled) throw new CancelledError(); throw e; });
  // Written as a temp folder then renamed, so a half-written base is never picked up.
  const tmp = `${baseDir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    saveBase(tmp, preset.model, b.params);
    fs.renameSync(tmp, baseDir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { config: preset.model, params: b.params, pretrained: true };
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
      s.send({ kind: 'points', points: pts }, `Training: step ${s.done} of ${form.steps}`);
    },
  };
  return s;
}

/** Writes `training_metrics.json` (the same definitions as the panel) into a saved adapter folder. */
function writeMetrics(dir: string, form: TrainForm, mode: 'lora' | 'balora', res: TrainJobResult, trainLoss: number | undefined): void {
  const e = res.eval!;
  const causal = form.task === 'causal-lm';
  const ev = (x: EvalResult) => ({ loss: x.loss, accuracy: x.acc, ...(causal ? { perplexity: Math.exp(x.loss) } : {}) });
  const out = {
    task: form.task, mode, steps: res.step, r: form.r, alpha: form.alpha, lr: form.lr, seed: form.seed,
    definitions: causal ? METRIC_DEFINITIONS.causal : METRIC_DEFINITIONS.builtin,
    finalTrainingLoss: trainLoss ?? null,
    heldOut: ev(e[mode]), baseHeldOut: ev(e.base),
    ...(res.data ? { data: res.data } : {}),
  };
  fs.writeFileSync(path.join(dir, 'training_metrics.json'), JSON.stringify(out, null, 2));
}

export async function trainingJob(p: TrainJobParams, ctx: JobContext<TrainProgressData>): Promise<TrainJobResult> {
  const t0 = performance.now();
  const form = checkForm(p?.form);
  if (!p.saveDirs || typeof p.saveDirs.lora !== 'string' || typeof p.saveDirs.balora !== 'string') throw new Error('training.run: saveDirs are required');
  if (isBuiltinTask(form.task) && typeof p.baseDir !== 'string') throw new Error(`training.run: baseDir is required for ${form.task}`);
  const provider: ProviderName = p.provider === 'webgpu' || p.provider === 'cuda' ? p.provider : 'cpu';
  assertNew(p.saveDirs.lora);
  assertNew(p.saveDirs.balora);
  if (!isBuiltinTask(form.task)) return causalLmJob(p, form, provider, ctx, t0);

  const preset = PRESETS[form.task];
  const ps = pointStream(ctx, form);
  const send = ps.send, flush = ps.flush;
  const baseDir = p.baseDir!;
  const base = await ensureBase(preset, baseDir, provider, ctx, (d) => send(d, d.kind === 'phase' ? d.message : ''));
  const model = base.config;
  const spec: LoraSpec = { targets: LORA_TARGETS, r: form.r, alpha: form.alpha };
  const { train, test } = preset.data(form.seed);
  const resume = p.resume as { lora: TrainState; balora: TrainState } | undefined;
  // metricsEvery 1: the balance gap and κ are charted every step.
  const mk = (mode: 'lora' | 'balora') => Trainer.create({
    model, mode, lora: spec, base: base.params, lr: form.lr, batchSize: train.n, seed: form.seed, provider, resume: resume?.[mode],
  });
  const lora = await mk('lora');
  const balora = await mk('balora');
  try {
    const prov = lora.provider;
    send({ kind: 'provider', requested: provider, used: prov.used as ProviderName, reason: prov.reason });
    send({ kind: 'phase', phase: 'train', message: `Training LoRA and BaLoRA side by side (rank ${form.r}, alpha ${form.alpha}, learning rate ${form.lr} with cosine decay)` });
    ps.done = lora.step;
    let stopped = false;
    const last: Partial<Record<'lora' | 'balora', number>> = {};
    while (ps.done < form.steps) {
      if (ctx.token.cancelled) { stopped = true; break; }
      // Cosine decay over the run's steps (as `lora-lens train-demo`); the step index survives Stop → Resume.
      const lr = cosineLr(form.lr, lora.step, form.steps, 0.02);
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const s = await tr.trainStep(train, lr);
        const pt: TrainPoint = { mode, step: s.step, loss: s.loss, balanceGap: s.balanceGap, kappaA: s.kappaA, kappaB: s.kappaB };
        if (s.step % EVAL_EVERY === 0 || s.step === form.steps) {
          const ev = await tr.evaluate(test);
          pt.heldOutAccuracy = ev.acc;
          pt.heldOutLoss = ev.loss;
        }
        last[mode] = s.loss;
        ps.push(pt);
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
      send({ kind: 'phase', phase: 'save', message: `Evaluating on the ${test.n} held-out pairs and saving both adapters` });
      const baseEval = await evaluateBase(lora, test);
      res.eval = { lora: await lora.evaluate(test), balora: await balora.evaluate(test), base: baseEval };
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const dir = p.saveDirs[mode];
        assertNew(dir);
        const tmp = `${dir}.tmp-${process.pid}`;
        fs.rmSync(tmp, { recursive: true, force: true });
        try {
          tr.saveAdapter(tmp, path.relative(dir, baseDir) || '.');
          writeMetrics(tmp, form, mode, res, last[mode]);
          fs.renameSync(tmp, dir);
        } catch (e) {
          fs.rmSync(tmp, { recursive: true, force: true });
          throw e;
        }
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
async function evaluateBase(tr: Trainer, test: ModData): Promise<EvalResult> {
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
  return { loss: lossSum / count, acc: correct / count, perplexity: Math.exp(lossSum / count) };
}

async function causalLmJob(p: TrainJobParams, form: TrainForm, provider: ProviderName, ctx: JobContext<TrainProgressData>, t0: number): Promise<TrainJobResult> {
  if (p.resume) throw new Error('causal-lm runs cannot be resumed: start a new run');
  const modelDir = path.resolve(form.modelDir!), dataFile = path.resolve(form.dataFile!);
  const seqLen = form.seqLen!, batchSize = form.batchSize!;
  for (const f of ['config.json', 'tokenizer.json']) if (!fs.existsSync(path.join(modelDir, f))) throw new Error(`${modelDir} has no ${f} (a Hugging Face model folder is needed)`);
  if (!fs.existsSync(dataFile)) throw new Error(`dataset ${dataFile} not found`);
  const ps = pointStream(ctx, form);
  ps.send({ kind: 'phase', phase: 'train', message: `Loading ${path.basename(modelDir)} and tokenizing ${path.basename(dataFile)}` });
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
    ps.send({ kind: 'phase', phase: 'train', message: `Training LoRA and BaLoRA on ${path.basename(modelDir)} (${targets.join(', ')}; r = ${form.r}, α = ${form.alpha}, lr = ${form.lr}; ${train.n} train / ${test.n} held-out sequences of ${seqLen} tokens)` });
    let stopped = false;
    const last: Partial<Record<'lora' | 'balora', number>> = {};
    while (ps.done < form.steps) {
      if (ctx.token.cancelled) { stopped = true; break; }
      const batch = makeBatch(train, batchIndices(train.n, batchSize, ps.done, form.seed));
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const s = await tr.trainStep(batch);
        last[mode] = s.loss;
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
      ps.send({ kind: 'phase', phase: 'save', message: `Evaluating on ${Math.min(test.n, MAX_EVAL_SEQS)} held-out sequences and saving both adapters` });
      res.eval = { lora: await evaluateLm(lora, test, batchSize), balora: await evaluateLm(balora, test, batchSize), base: await evaluateLm(lora, test, batchSize, true) };
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const dir = path.resolve(p.saveDirs[mode]);
        assertNew(dir);
        tr.save(dir, path.relative(dir, modelDir).split(path.sep).join('/') || '.');
        writeMetrics(dir, form, mode, res, last[mode]);
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
