/**
 * Base-model analyses in the UI (issue 3): commands
 *   loraLens.setBaseModel        LoRA Lens: Set Base Model
 *   loraLens.analyzeIntruders    LoRA Lens: Intruder Dimensions        → panel loraLens.intruders
 *   loraLens.showSpectra         LoRA Lens: Spectra (base vs adapted)  → panel loraLens.spectra
 *   loraLens.compareCheckpoints  LoRA Lens: Compare Checkpoints        → panel loraLens.compare
 *   loraLens.analyzeModel        LoRA Lens: Analyze Model              → panel loraLens.model (streamed)
 * Heavy work runs in the worker (src/worker/jobs/base.ts) under a cancellable progress
 * notification; errors surface once, here, at the command boundary.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  refusalOf, verifiedText,
  type AnalyzeModelParams, type CompareParams, type CompareTensorParams, type IntruderMode, type IntrudersParams, type MitigateData, type MitigateParams, type ModelInit,
  type SpectraData, type SpectraInit, type SpectraParams,
} from '../../../shared/base';
import { AnalyzeModel, Compare, CompareTensor, Describe, EstimateFull, Intruders, Mitigate, Spectra, type Job } from '../../../shared/jobs';
import { runRefusable } from './refusal';
import type { LensContext } from '../../context';
import { workspaceCheckpoints } from '../../inspectorTree';
import { errorMessage, log } from '../../log';
import { BaseModelStore, chooseBaseModel, resolveBaseModel } from './baseModels';
import { BasePanel, type RequestHandler } from './panel';
import { pathExists, pickAdapter, providerSetting, registerBoundaryCommands, runJobWithProgress, argTarget, type ArgTarget } from '../../ui';

interface Ctx extends LensContext {
  store: BaseModelStore;
  cacheDir: string;
}


function intruderSettings(): { k: number; epsilon: number; mode: IntruderMode; lambda: number } {
  const c = vscode.workspace.getConfiguration('loraLens.intruders');
  const mode = c.get<string>('mode', 'auto');
  return {
    k: Math.max(1, Math.floor(c.get<number>('k', 10))),
    epsilon: c.get<number>('epsilon', 0.5),
    mode: mode === 'exact' || mode === 'approx' ? mode : 'auto',
    lambda: c.get<number>('lambda', 0.75),
  };
}

function topK(): number {
  return Math.max(1, Math.floor(vscode.workspace.getConfiguration('loraLens.spectra').get<number>('topK', 64)));
}

/** Runs a worker job under a cancellable progress notification. */
function runJob<P, R>(ctx: Ctx, title: string, job: Job<P, R>, params: P): Promise<R> {
  return runJobWithProgress(ctx.worker, job, params, `LoRA Lens: ${title}`);
}

// ---------------------------------------------------------------------------------------------
// arguments

async function isAdapterPath(p: string): Promise<boolean> {
  const st = await fsp.stat(p).catch(() => undefined);
  if (!st) return false;
  if (st.isDirectory()) return pathExists(path.join(p, 'adapter_config.json'));
  return path.basename(p) === 'adapter_config.json' || pathExists(path.join(path.dirname(p), 'adapter_config.json'));
}

async function adapterRoot(p: string): Promise<string> {
  return (await fsp.stat(p).catch(() => undefined))?.isDirectory() ? p : path.dirname(p);
}


async function adapterFrom(ctx: Ctx, arg: unknown, title: string): Promise<ArgTarget | undefined> {
  const t = argTarget(arg);
  if (t.adapter) return t;
  if (t.file && (await isAdapterPath(t.file))) return { adapter: await adapterRoot(t.file) };
  const a = await pickAdapter(ctx.reader, title);
  return a ? { adapter: a } : undefined;
}

// ---------------------------------------------------------------------------------------------
// commands

async function setBaseModel(ctx: Ctx, arg: unknown): Promise<void> {
  const t = await adapterFrom(ctx, arg, 'Set Base Model');
  if (!t?.adapter) return;
  await chooseBaseModel(ctx.store, t.adapter);
  ctx.inspector?.refresh();
}

async function analyzeIntruders(ctx: Ctx, arg: unknown): Promise<void> {
  const t = await adapterFrom(ctx, arg, 'Intruder Dimensions');
  if (!t?.adapter) return;
  const adapterPath = t.adapter;
  const baseDir = await resolveBaseModel(ctx.store, adapterPath);
  if (!baseDir) return;
  const s = intruderSettings();
  log.info(`intruders ${adapterPath} vs ${baseDir} (k=${s.k}, ε=${s.epsilon}, mode ${s.mode}, provider ${providerSetting()})`);
  let forced = false;
  const data = await runRefusable((force) => {
    forced = force;
    const params: IntrudersParams = { adapterPath, baseDir, k: s.k, epsilon: s.epsilon, mode: s.mode, cacheDir: ctx.cacheDir, force };
    return runJob(ctx, `intruder dimensions of ${path.basename(adapterPath)}`, Intruders, params);
  }, 'Analyse anyway');
  if (!data) return;
  log.info(`intruders of ${data.adapter.name}: ${data.totals.intruders} certain, ${data.totals.possible} possible in ${data.totals.analysed} modules (${data.ms} ms, cache ${data.cache.hits} hits) on ${data.engine.provider}`);
  for (const e of data.errors) log.warn(`intruders ${e.name}: ${e.message}`);
  data.settings.lambda = s.lambda;
  const handler: RequestHandler = async (m) => {
    if (m.type === 'openSpectra') {
      await showSpectra(ctx, { adapter: adapterPath, module: m.module });
      return {};
    }
    if (m.type !== 'mitigate') throw new Error(`unexpected request ${m.type}`);
    const r = await mitigate(ctx, adapterPath, baseDir, m.lambda, forced);
    return r ? { result: { kind: 'mitigate', data: r }, message: `Wrote ${path.basename(r.outDir)} (${r.changed.length} modules changed). ${verifiedText(r.verification)}` } : { message: 'Mitigation cancelled' };
  };
  BasePanel.show({
    extensionUri: ctx.extensionUri, key: adapterPath, title: `Intruders: ${data.adapter.name}`, init: { type: 'init', view: 'intruders', data }, handler, status: ctx.status,
  });
}

async function mitigate(ctx: Ctx, adapterPath: string, baseDir: string, lambda: number, force = false): Promise<MitigateData | undefined> {
  const s = intruderSettings();
  const root = await adapterRoot(adapterPath);
  const name = path.basename(root);
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.file(path.join(path.dirname(root), `${name}-intruders-mitigated`)),
    title: `New adapter folder for ${name} with intruders scaled by λ = ${lambda}`,
    saveLabel: 'Write New Adapter',
  });
  if (!target) return undefined;
  if (target.scheme !== 'file') throw new Error('the mitigated adapter must be written to a local folder');
  const params: MitigateParams = { adapterPath, baseDir, k: s.k, epsilon: s.epsilon, mode: s.mode, lambda, outDir: target.fsPath, cacheDir: ctx.cacheDir, force };
  const r = await runJob(ctx, `mitigating intruders of ${name} (λ = ${lambda})`, Mitigate, params);
  log.info(`mitigated ${adapterPath} → ${r.outDir}: ${r.changed.length} modules changed, ${r.unchanged} unchanged, verified`);
  ctx.inspector?.refresh();
  await vscode.commands.executeCommand('loraLens.inspector.focus').then(undefined, () => undefined);
  void vscode.window.showInformationMessage(
    `LoRA Lens: wrote ${path.basename(r.outDir)} (${r.changed.length} modules with intruders rescaled). ${verifiedText(r.verification)}`, 'Intruder Dimensions', 'Reveal in Explorer',
  ).then(async (c) => {
    if (c === 'Intruder Dimensions') await vscode.commands.executeCommand('loraLens.analyzeIntruders', vscode.Uri.file(r.outDir));
    if (c === 'Reveal in Explorer') await vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(r.outDir));
  });
  return r;
}

/** Matrix modules of an adapter, read by the reader worker (throws the reader's error). */
async function moduleList(ctx: Ctx, adapterPath: string): Promise<SpectraInit['modules']> {
  const d = (await ctx.reader.run(Describe, { adapter: adapterPath })).adapter;
  if (!d || !('value' in d)) throw new Error(d?.error ?? `${adapterPath}: not described`);
  return d.value.modules.filter((m) => !m.conv).map((m) => ({ name: m.name, m: m.outFeatures, n: m.inFeatures, layer: m.layer, kind: m.kind }));
}

async function confirmFull(ctx: Ctx, m: number, n: number, what: string): Promise<boolean> {
  const est = await ctx.worker.run(EstimateFull, { m, n }, { provider: providerSetting() });
  const secs = est.seconds < 1 ? `${Math.max(1, Math.round(est.seconds * 1000))} ms` : est.seconds < 120 ? `${est.seconds.toFixed(1)} s` : `${(est.seconds / 60).toFixed(1)} min`;
  const d = Math.min(m, n);
  const detail = `All ${d} singular values of W0 and of W0 + ΔW (${m}×${n}): fp64 Gram in onnxruntime + a TypeScript eigen solver, O(d³) with d = ${d}.` +
    (d > est.maxDim ? ` d exceeds ${est.maxDim}: this is slow and uses ${((d * d * 8) / 2 ** 20).toFixed(0)} MiB per Gram.` : '') +
    ' The top-k spectrum (rsvd) is shown meanwhile; the base result is cached on disk.';
  const ok = await vscode.window.showWarningMessage(`Compute the full spectrum of ${what}? Estimated time on this machine: about ${secs}.`, { modal: true, detail }, 'Compute Full Spectrum');
  return ok === 'Compute Full Spectrum';
}

async function showSpectra(ctx: Ctx, arg: unknown): Promise<void> {
  const t = await adapterFrom(ctx, arg, 'Spectra (base vs adapted)');
  if (!t?.adapter) return;
  const adapterPath = t.adapter;
  const baseDir = await resolveBaseModel(ctx.store, adapterPath);
  if (!baseDir) return;
  const modules = await moduleList(ctx, adapterPath);
  if (modules.length === 0) throw new Error(`${path.basename(adapterPath)} has no matrix LoRA modules`);
  let module = t.module && modules.some((m) => m.name === t.module) ? t.module : undefined;
  if (!module) {
    const pick = await vscode.window.showQuickPick(
      modules.map((m) => ({ label: m.name, description: `${m.m}×${m.n}`, name: m.name })),
      { title: `LoRA Lens: Spectra — ${path.basename(adapterPath)}`, placeHolder: 'Select a module (σ of W0, W0 + ΔW and ΔW)' },
    );
    module = pick?.name;
    if (!module) return;
  }
  let forced = false;
  const run = (mod: string, full: boolean): Promise<SpectraData> =>
    runJob(ctx, `spectra of ${mod}${full ? ' (full)' : ''}`, Spectra, { adapterPath, baseDir, module: mod, k: topK(), full, cacheDir: ctx.cacheDir, force: forced } satisfies SpectraParams);
  const data = await runRefusable((force) => { forced = force; return run(module, false); }, 'Analyse anyway');
  if (!data) return;
  log.info(`spectra ${module}: k=${data.k}${data.full ? ' (full)' : ''}, base ${data.baseCached ? 'cached' : 'computed'}, ${data.ms} ms on ${data.engine.provider}`);
  const handler: RequestHandler = async (m) => {
    if (m.type !== 'spectra') throw new Error(`unexpected request ${m.type}`);
    const info = modules.find((x) => x.name === m.module);
    if (!info) throw new Error(`unknown module ${m.module}`);
    if (m.full && Math.min(info.m, info.n) > topK() && !(await confirmFull(ctx, info.m, info.n, m.module))) return { message: 'Full spectrum not computed' };
    return { result: { kind: 'spectra', data: await run(m.module, m.full) } };
  };
  const name = path.basename(adapterPath);
  BasePanel.show({
    extensionUri: ctx.extensionUri, key: adapterPath, title: `Spectra: ${name}`,
    init: { type: 'init', view: 'spectra', data: { adapter: { name, path: adapterPath }, base: { dir: baseDir }, modules, data } }, handler, status: ctx.status,
  });
}

// ---------------------------------------------------------------------------------------------
// Analyze Model (issue 10): intruders + ESD of every module, streamed into one panel

interface ModelRun {
  key: string;
  panel?: BasePanel;
  state: ModelInit;
  force: boolean;
  cancel?: () => void;
}

const modelRuns = new Map<string, ModelRun>();

/** Pushes the whole state as `init` (what a reloaded webview also gets). */
function publish(run: ModelRun): void {
  run.panel?.update({ type: 'init', view: 'model', data: run.state });
}

/** One run of the AnalyzeModel job over the modules not yet in `run.state.rows` (resume = the rest). */
async function startModelRun(ctx: Ctx, run: ModelRun): Promise<void> {
  const st = run.state;
  const s = intruderSettings();
  st.state = 'running';
  st.message = st.rows.length ? `Resuming after ${st.rows.length} modules (base decompositions from the cache)` : 'Starting…';
  st.doneThisRun = 0;
  st.elapsedMs = 0;
  publish(run);
  const t0 = Date.now();
  let cancelled = false;
  const listeners: (() => void)[] = [];
  const token = { get cancelled() { return cancelled; }, onCancellationRequested: (cb: () => void) => { listeners.push(cb); } };
  run.cancel = () => { if (!cancelled) { cancelled = true; listeners.forEach((f) => f()); } };
  const params: AnalyzeModelParams = {
    adapterPath: st.adapter.path, baseDir: st.base.dir, k: s.k, epsilon: s.epsilon, mode: s.mode, topK: topK(), cacheDir: ctx.cacheDir,
    skip: st.rows.map((r) => r.name), force: run.force,
  };
  log.info(`analyze model ${st.adapter.path} vs ${st.base.dir} (${params.skip?.length ?? 0} modules already done)`);
  try {
    const r = await ctx.worker.run(AnalyzeModel, params, {
      provider: providerSetting(), token,
      onProgress: (done, total, message, data) => {
        st.total = total;
        st.elapsedMs = Date.now() - t0;
        if (data?.row) {
          st.rows.push(data.row);
          st.doneThisRun++;
          run.panel?.post({ type: 'modelRow', row: data.row, done, total, elapsedMs: st.elapsedMs, doneThisRun: st.doneThisRun });
        } else {
          st.message = message;
          run.panel?.post({ type: 'modelState', state: 'running', message, done, total });
        }
      },
    });
    st.state = 'done';
    st.total = r.total;
    st.errors = r.errors;
    st.warnings = r.warnings;
    st.engine = r.engine;
    st.message = `${st.rows.length} of ${r.total} modules analysed${r.skipped ? ` (${r.skipped} from the cancelled run)` : ''}`;
    for (const e of r.errors) log.warn(`analyze model ${e.name}: ${e.message}`);
    run.panel?.setEngine(r.engine);
    log.info(`analyze model ${st.adapter.name}: ${st.message} in ${r.ms} ms on ${r.engine.provider}`);
    publish(run);
  } catch (e) {
    if (cancelled || (e instanceof Error && e.name === 'CancelledError')) {
      st.state = 'cancelled';
      st.message = `Cancelled after ${st.rows.length} of ${st.total} modules; Resume computes the rest (finished modules are kept, base decompositions are cached)`;
      log.info(`analyze model ${st.adapter.name}: cancelled at ${st.rows.length}/${st.total}`);
      publish(run);
      return;
    }
    const ref = refusalOf(errorMessage(e));
    st.state = 'failed';
    st.message = ref.sentence;
    publish(run);
    if (ref.forceable && !run.force) {
      log.warn(`refused: ${ref.sentence}`);
      const c = await vscode.window.showErrorMessage(`LoRA Lens: ${ref.sentence}`, 'Analyse anyway');
      if (c === 'Analyse anyway') {
        run.force = true;
        return startModelRun(ctx, run);
      }
      return;
    }
    throw e;
  } finally {
    if (st.state !== 'running') run.cancel = undefined;
  }
}

async function analyzeModel(ctx: Ctx, arg: unknown): Promise<void> {
  const t = await adapterFrom(ctx, arg, 'Analyze Model');
  if (!t?.adapter) return;
  const adapterPath = t.adapter;
  const baseDir = await resolveBaseModel(ctx.store, adapterPath);
  if (!baseDir) return;
  const key = `${adapterPath}|${baseDir}`;
  const existing = modelRuns.get(key);
  if (existing?.state.state === 'running') {
    existing.panel?.reveal();
    return;
  }
  const s = intruderSettings();
  const name = path.basename(adapterPath);
  const run: ModelRun = {
    key, force: false,
    state: {
      adapter: { name, path: adapterPath }, base: { dir: baseDir }, settings: { k: s.k, epsilon: s.epsilon, mode: s.mode, topK: topK() },
      rows: [], total: 0, state: 'running', elapsedMs: 0, doneThisRun: 0, errors: [], warnings: [],
    },
  };
  const handler: RequestHandler = async (m) => {
    switch (m.type) {
      case 'cancelModel':
        if (run.state.state !== 'running' || !run.cancel) return { message: 'Not running' };
        run.cancel();
        return { message: 'Cancelling…' };
      case 'resumeModel':
        if (run.state.state === 'running') return { message: 'Already running' };
        void startModelRun(ctx, run).catch((e) => void vscode.window.showErrorMessage(`LoRA Lens: ${errorMessage(e)}`));
        return { message: 'Resumed' };
      case 'openSpectra':
        await showSpectra(ctx, { adapter: adapterPath, module: m.module });
        return {};
      default:
        throw new Error(`unexpected request ${m.type}`);
    }
  };
  run.panel = BasePanel.show({
    extensionUri: ctx.extensionUri, key, title: `Analyze Model: ${name}`, init: { type: 'init', view: 'model', data: run.state }, handler, status: ctx.status,
  });
  modelRuns.get(key)?.cancel?.();
  modelRuns.set(key, run);
  run.panel.onDispose(() => {
    if (modelRuns.get(key) !== run) return;
    run.cancel?.();
    modelRuns.delete(key);
  });
  await startModelRun(ctx, run);
}

/** Weights in the workspace that are not adapters (files, sharded indexes, model folders). */
async function pickWeights(ctx: Ctx, title: string, exclude?: string): Promise<string | undefined> {
  type Item = vscode.QuickPickItem & { p?: string; browse?: boolean };
  const items: Item[] = [];
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  try {
    for (const { ref: r } of await workspaceCheckpoints(ctx.reader, ['safetensors', 'sharded', 'model-folder'])) {
      if (r.path === exclude) continue;
      items.push({ label: r.name, description: r.kind, detail: root ? path.relative(root, r.path) || r.path : r.path, p: r.path });
    }
  } catch (e) {
    log.warn(`compare: ${errorMessage(e)}`);
  }
  items.push({ label: '$(folder-opened) Browse…', description: 'a .safetensors file, *.index.json or a model folder', browse: true });
  const pick = await vscode.window.showQuickPick(items, { title: `LoRA Lens: Compare Checkpoints — ${title}`, matchOnDetail: true });
  if (!pick) return undefined;
  if (!pick.browse) return pick.p;
  const uris = await vscode.window.showOpenDialog({
    canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title, filters: { Weights: ['safetensors', 'json'] },
    defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
  });
  return uris?.[0]?.fsPath;
}

async function compareCheckpoints(ctx: Ctx, arg: unknown, arg2?: unknown): Promise<void> {
  const t = argTarget(arg), t2 = argTarget(arg2);
  const a = t.file ?? t.adapter ?? (await pickWeights(ctx, 'A: reference (W0)'));
  if (!a) return;
  const b = t2.file ?? (await pickWeights(ctx, `B: compared with ${path.basename(a)} (W1)`, a));
  if (!b) return;
  const data = await runJob(ctx, `comparing ${path.basename(a)} and ${path.basename(b)}`, Compare, { a, b } satisfies CompareParams);
  log.info(`compare ${a} vs ${b}: ${data.rows.length} tensors, ${data.skipped.length} skipped, ${data.ms} ms`);
  const s = intruderSettings();
  const handler: RequestHandler = async (m) => {
    if (m.type !== 'compareTensor') throw new Error(`unexpected request ${m.type}`);
    const params: CompareTensorParams = { a, b, tensor: m.tensor, k: topK(), epsilon: s.epsilon, mode: s.mode, cacheDir: ctx.cacheDir };
    return { result: { kind: 'compareTensor', data: await runJob(ctx, `ΔW of ${m.tensor}`, CompareTensor, params) } };
  };
  BasePanel.show({
    extensionUri: ctx.extensionUri, key: `${a}|${b}`, title: `Compare: ${path.basename(a)} ↔ ${path.basename(b)}`,
    init: { type: 'init', view: 'compare', data }, handler, status: ctx.status,
  });
}

/** Registers the base-model commands; each failure surfaces once, at the command boundary. */
export function registerBaseFeatures(base: LensContext): void {
  const context = base.extension;
  const ctx: Ctx = {
    ...base, store: new BaseModelStore(context.workspaceState, base.reader),
    cacheDir: vscode.Uri.joinPath(context.globalStorageUri, 'decomp').fsPath,
  };
  const commands: Record<string, (...args: unknown[]) => unknown> = {
    'loraLens.setBaseModel': (arg) => setBaseModel(ctx, arg),
    'loraLens.analyzeIntruders': (arg) => analyzeIntruders(ctx, arg),
    'loraLens.showSpectra': (arg) => showSpectra(ctx, arg),
    'loraLens.analyzeModel': (arg) => analyzeModel(ctx, arg),
    'loraLens.compareCheckpoints': (arg, sel) => (Array.isArray(sel) && sel.length === 2 ? compareCheckpoints(ctx, sel[0], sel[1]) : compareCheckpoints(ctx, arg)),
  };
  registerBoundaryCommands(context, commands);
  context.subscriptions.push({ dispose: () => BasePanel.disposeAll() });
}
