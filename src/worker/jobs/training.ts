/**
 * `training.run`: LoRA and BaLoRA side by side (interleaved step by step, same data order and init)
 * on the built-in task of papers.md §5.3: a tiny attention-only transformer pre-trained on
 * (x + y) mod p is fine-tuned to (x − y) mod p. The pre-trained base is read from `baseDir`, or
 * pre-trained once and written there (new folder) when missing.
 *
 * Streams `TrainProgressData` through `progress(…, data)`: batched points (≥ 50 ms apart), phases and
 * the execution provider actually used. Cancellation stops between steps and returns the resume
 * state instead of throwing (the host offers Resume); on completion both adapters are saved as
 * PEFT folders into `saveDirs` (refused if they exist).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError } from '../../core/formats/errors';
import { OutputExistsError } from '../../core/surgery/writer';
import { LORA_TARGETS, modularData, type LoraSpec, type ParamSet, type TinyTransformerConfig } from '../../core/train/models';
import { Trainer, loadBase, type TrainState } from '../../core/train/trainer';
import {
  checkForm, type EvalResult, type ProviderName, type TrainJobParams, type TrainJobResult, type TrainPoint, type TrainProgressData,
} from '../../../webview/training/protocol';
import { registerJob, type JobContext } from './registry';

/** The built-in model: p = 23, d = 32, two shared attention layers (pre-trains to ~97 % in ~400 full-batch steps). */
export const TRAIN_MODEL: TinyTransformerConfig = { p: 23, dModel: 32, depth: 2 };
export const PRETRAIN_STEPS = 400;

const tick = (): Promise<void> => new Promise((res) => setImmediate(res));

async function ensureBase(baseDir: string, provider: ProviderName, ctx: JobContext, send: (d: TrainProgressData) => void): Promise<{ config: TinyTransformerConfig; params: ParamSet; pretrained: boolean }> {
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

export async function trainingJob(params: unknown, ctx: JobContext): Promise<TrainJobResult> {
  const t0 = performance.now();
  const p = params as TrainJobParams;
  const form = checkForm(p?.form);
  if (typeof p.baseDir !== 'string' || !p.saveDirs || typeof p.saveDirs.lora !== 'string' || typeof p.saveDirs.balora !== 'string') {
    throw new Error('training.run: baseDir and saveDirs are required');
  }
  const provider: ProviderName = p.provider === 'webgpu' || p.provider === 'cuda' ? p.provider : 'cpu';
  assertNew(p.saveDirs.lora);
  assertNew(p.saveDirs.balora);

  let pending: TrainPoint[] = [];
  let lastFlush = 0;
  let done = 0;
  const send = (d: TrainProgressData, msg = ''): void => ctx.progress(done, form.steps, msg, d);
  const flush = (force = false): void => {
    const now = performance.now();
    if (!pending.length || (!force && now - lastFlush < 50)) return;
    lastFlush = now;
    const pts = pending;
    pending = [];
    send({ kind: 'points', points: pts }, `step ${done}/${form.steps}`);
  };

  const base = await ensureBase(p.baseDir, provider, ctx, (d) => send(d, d.kind === 'phase' ? d.message : ''));
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
    done = lora.step;
    let stopped = false;
    while (done < form.steps) {
      if (ctx.token.cancelled) { stopped = true; break; }
      for (const [mode, tr] of [['lora', lora], ['balora', balora]] as const) {
        const s = await tr.trainStep(train);
        pending.push({ mode, step: s.step, loss: s.loss, balanceGap: s.balanceGap, kappaA: s.kappaA, kappaB: s.kappaB });
      }
      done = lora.step;
      flush();
      if (done % 5 === 0) await tick();
    }
    flush(true);
    const res: TrainJobResult = {
      stopped, step: done, provider: { requested: provider, used: lora.provider.used as ProviderName, reason: lora.provider.reason },
      pretrained: base.pretrained, baseDir: p.baseDir, ms: 0,
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
        tr.saveAdapter(tmp, path.relative(dir, p.baseDir) || '.');
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

registerJob('training.run', trainingJob);
