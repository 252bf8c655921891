/**
 * Adapter surgery in the UI (issue 4): rebalance (BaLoRA), reduce rank (preview → write), merge
 * into base, combine, rescale. Heavy work runs as worker jobs (src/worker/jobs/surgery.ts) with
 * progress + cancel; every operation writes NEW files only and ends in a `loraLens.surgery` view.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { BaseWeights, Combine, Merge, Plan, Rebalance, Reduce, Rescale, ResolveBase } from '../../../shared/jobs';
import type {
  RankRuleKind, RankRuleSpec, SurgeryView,
} from '../../../shared/surgery';
import type { LensContext } from '../../context';
import { log } from '../../log';
import { SurgeryPanel, type SurgeryPanelActions } from './surgeryPanel';
import { runRefusable } from '../base/refusal';
import { verifiedText } from '../../../shared/base';
import {
  adapterFromArgOrPick, adapterName, askOutputFolder, pathExists, pickAdapter, registerBoundaryCommands, revealInTree, runJobWithProgress,
} from '../../ui';

type SurgeryDeps = LensContext;

function actions(deps: SurgeryDeps): SurgeryPanelActions {
  return {
    reveal: () => revealInTree(() => deps.inspector.refresh()),
    analyze: async (p) => { await vscode.commands.executeCommand('loraLens.analyzeAdapter', vscode.Uri.file(p)); },
  };
}

async function rebalance(deps: SurgeryDeps, arg: unknown): Promise<void> {
  const p = await adapterFromArgOrPick(deps.reader, arg, 'LoRA Lens: Rebalance Adapter (BaLoRA)');
  if (!p) return;
  const out = await askOutputFolder(p, '-balanced', `Rebalance ${adapterName(p)}: output folder`);
  if (!out) return;
  const r = await runJobWithProgress(deps.worker, Rebalance, { adapterPath: p, outDir: out }, `LoRA Lens: rebalancing ${adapterName(p)}`);
  log.info(`rebalanced ${p} → ${r.outDir} (${r.modules.length} modules, ${r.ms.toFixed(0)} ms), ${verifiedText(r.verification)}`);
  deps.inspector.refresh();
  SurgeryPanel.show(deps.extensionUri, `Rebalance: ${r.adapterName}`, { kind: 'rebalance', result: r }, actions(deps));
}

const RULES: { rule: RankRuleKind; label: string; detail: string; prompt: string; def: (r: number) => string }[] = [
  { rule: 'rank', label: 'Fixed rank k', detail: 'every module keeps its k largest singular values', prompt: 'New rank k (integer ≥ 1)', def: (r) => String(Math.max(1, Math.floor(r / 2))) },
  { rule: 'sv_fro', label: 'sv_fro x', detail: 'smallest k keeping a fraction x of ‖ΔW‖_F (Σσ²ᵢ ≥ x²·Σσ²)', prompt: 'Frobenius fraction x in (0, 1]', def: () => '0.9' },
  { rule: 'sv_cumulative', label: 'sv_cumulative x', detail: 'smallest k with Σ_{i≤k}σᵢ / Σσ ≥ x', prompt: 'Cumulative fraction x in (0, 1]', def: () => '0.9' },
  { rule: 'sv_ratio', label: 'sv_ratio x', detail: 'keep σᵢ > σ₁/x', prompt: 'Ratio x > 1', def: () => '10' },
];

async function adapterRank(p: string): Promise<number> {
  try {
    const cfg = JSON.parse(await fsp.readFile(path.join(p, 'adapter_config.json'), 'utf8')) as { r?: unknown };
    return typeof cfg.r === 'number' ? cfg.r : 8;
  } catch {
    return 8;
  }
}

async function askRule(p: string): Promise<RankRuleSpec | undefined> {
  const pick = await vscode.window.showQuickPick(RULES.map((r) => ({ ...r, description: r.rule })), { title: `Reduce rank of ${adapterName(p)}: rule`, placeHolder: 'How to choose the new rank per module' });
  if (!pick) return undefined;
  const rank = await adapterRank(p);
  const v = await vscode.window.showInputBox({
    title: `Reduce rank of ${adapterName(p)}: ${pick.label}`, prompt: pick.prompt, value: pick.def(rank),
    validateInput: (s) => {
      const x = Number(s);
      if (!Number.isFinite(x) || x <= 0) return 'Enter a positive number';
      if (pick.rule === 'rank' && !Number.isInteger(x)) return 'The rank must be an integer';
      if ((pick.rule === 'sv_fro' || pick.rule === 'sv_cumulative') && x > 1) return 'A fraction in (0, 1]';
      return undefined;
    },
  });
  return v === undefined ? undefined : { kind: pick.rule, value: Number(v) };
}

async function reduceRank(deps: SurgeryDeps, arg: unknown): Promise<void> {
  const p = await adapterFromArgOrPick(deps.reader, arg, 'LoRA Lens: Reduce Rank');
  if (!p) return;
  const rule = await askRule(p);
  if (!rule) return;
  const plan = await runJobWithProgress(deps.worker, Plan, { adapterPath: p, rule }, `LoRA Lens: planning rank reduction of ${adapterName(p)}`);
  SurgeryPanel.show(deps.extensionUri, `Reduce rank: ${plan.adapterName}`, { kind: 'plan', plan }, {
    ...actions(deps),
    writeReduced: async (v): Promise<SurgeryView | undefined> => {
      const ks = [...new Set(v.plan.modules.map((m) => m.k))];
      const out = await askOutputFolder(p, ks.length === 1 ? `-r${ks[0]}` : '-reduced', `Reduce rank of ${v.plan.adapterName}: output folder`);
      if (!out) return undefined;
      const result = await runJobWithProgress(deps.worker, Reduce, { adapterPath: p, outDir: out, rule: v.plan.rule }, `LoRA Lens: writing ${path.basename(out)}`);
      deps.inspector.refresh();
      return { kind: 'reduce', plan: v.plan, result };
    },
  });
}

async function mergeAdapter(deps: SurgeryDeps, arg: unknown): Promise<void> {
  const p = await adapterFromArgOrPick(deps.reader, arg, 'LoRA Lens: Merge Adapter into Base');
  if (!p) return;
  // Base weights from base_model_name_or_path, relative to the adapter folder or a workspace folder.
  const roots = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  const detected = (await deps.reader.run(ResolveBase, { adapterPath: p, roots })).weights;
  let base: string | undefined;
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const items: (vscode.QuickPickItem & { path?: string })[] = [];
  if (detected) items.push({ label: `$(check) ${path.relative(root ?? '', detected) || detected}`, description: 'from base_model_name_or_path', path: detected });
  items.push({ label: '$(folder-opened) Browse…', description: 'pick the base model folder or weights file' });
  const pick = await vscode.window.showQuickPick(items, { title: `Merge ${adapterName(p)} into base: base model` });
  if (!pick) return;
  if (pick.path) base = pick.path;
  else {
    const sel = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: 'Base model (folder or .safetensors)', defaultUri: vscode.Uri.file(path.dirname(p)) });
    if (!sel?.[0]) return;
    base = (await deps.reader.run(BaseWeights, { path: sel[0].fsPath })).weights;
    if (!base) throw new Error(`${sel[0].fsPath}: no single base weights file (model.safetensors, *.safetensors or model.safetensors.index.json) found`);
  }
  const baseDir = path.dirname(base);
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.file(path.join(path.dirname(baseDir), 'model-merged.safetensors')),
    filters: { Safetensors: ['safetensors'] }, saveLabel: 'Write merged model', title: `Merge ${adapterName(p)} into ${path.basename(baseDir)}: new file`,
  });
  if (!target) return;
  const out = target.fsPath;
  if (await pathExists(out)) throw new Error(`${out} already exists; LoRA Lens never overwrites, choose a new file name`);
  const r = await runRefusable((force) => runJobWithProgress(deps.worker, Merge, { adapterPath: p, basePath: base, outFile: out, force }, `LoRA Lens: merging ${adapterName(p)}`), 'Merge anyway');
  if (!r) return;
  log.info(`merged ${p} into ${base} → ${r.output}: ${verifiedText(r.verification)}`);
  deps.inspector.refresh();
  SurgeryPanel.show(deps.extensionUri, `Merged: ${path.basename(out)}`, { kind: 'simple', result: r }, actions(deps));
}

async function combine(deps: SurgeryDeps, arg: unknown): Promise<void> {
  const p1 = await adapterFromArgOrPick(deps.reader, arg, 'LoRA Lens: Combine Adapters (first adapter)');
  if (!p1) return;
  const p2 = await pickAdapter(deps.reader, `Combine ${adapterName(p1)} with…`, p1);
  if (!p2) return;
  const w = await vscode.window.showInputBox({
    title: 'Combine adapters: weights', prompt: `w1, w2 in w1·ΔW(${adapterName(p1)}) + w2·ΔW(${adapterName(p2)})`, value: '1, 1',
    validateInput: (s) => (s.split(/[,\s]+/).filter(Boolean).length === 2 && s.split(/[,\s]+/).filter(Boolean).every((x) => Number.isFinite(Number(x))) ? undefined : 'Two numbers, e.g. "1, 0.5"'),
  });
  if (w === undefined) return;
  const [w1, w2] = w.split(/[,\s]+/).filter(Boolean).map(Number);
  const mode = await vscode.window.showQuickPick([
    { label: 'cat', description: 'exact: concatenate factors (rank r1 + r2)', mode: 'cat' as const },
    { label: 'svd', description: 'truncated SVD of the sum, balanced factors (rank max(r1, r2))', mode: 'svd' as const },
  ], { title: 'Combine adapters: method' });
  if (!mode) return;
  const out = await askOutputFolder(p1, `+${adapterName(p2)}`, 'Combine adapters: output folder');
  if (!out) return;
  const r = await runRefusable((force) => runJobWithProgress(deps.worker, Combine, { adapter1: p1, weight1: w1, adapter2: p2, weight2: w2, outDir: out, mode: mode.mode, force }, `LoRA Lens: combining into ${path.basename(out)}`), 'Combine anyway');
  if (!r) return;
  log.info(`combined ${p1} + ${p2} → ${r.output}: ${verifiedText(r.verification)}`);
  deps.inspector.refresh();
  SurgeryPanel.show(deps.extensionUri, `Combined: ${path.basename(out)}`, { kind: 'simple', result: r }, actions(deps));
}

async function rescale(deps: SurgeryDeps, arg: unknown): Promise<void> {
  const p = await adapterFromArgOrPick(deps.reader, arg, 'LoRA Lens: Rescale Adapter');
  if (!p) return;
  const f = await vscode.window.showInputBox({
    title: `Rescale ${adapterName(p)}`, prompt: 'Factor for ΔW (lora_alpha and alpha_pattern are multiplied by it)', value: '0.5',
    validateInput: (s) => (Number.isFinite(Number(s)) && Number(s) !== 0 ? undefined : 'A non-zero number'),
  });
  if (f === undefined) return;
  const out = await askOutputFolder(p, `-x${Number(f)}`, `Rescale ${adapterName(p)}: output folder`);
  if (!out) return;
  const r = await runJobWithProgress(deps.worker, Rescale, { adapterPath: p, factor: Number(f), outDir: out }, `LoRA Lens: rescaling ${adapterName(p)}`);
  log.info(`rescaled ${p} → ${r.output}: ${verifiedText(r.verification)}`);
  deps.inspector.refresh();
  SurgeryPanel.show(deps.extensionUri, `Rescaled: ${path.basename(out)}`, { kind: 'simple', result: r }, actions(deps));
}

export function registerSurgery(deps: LensContext): void {
  registerBoundaryCommands(deps.extension, {
    'loraLens.rebalanceAdapter': (arg) => rebalance(deps, arg),
    'loraLens.reduceRank': (arg) => reduceRank(deps, arg),
    'loraLens.mergeAdapter': (arg) => mergeAdapter(deps, arg),
    'loraLens.combineAdapters': (arg) => combine(deps, arg),
    'loraLens.rescaleAdapter': (arg) => rescale(deps, arg),
  });
  deps.extension.subscriptions.push({ dispose: () => SurgeryPanel.disposeAll() });
}
