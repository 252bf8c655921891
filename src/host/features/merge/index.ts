/**
 * "Combine Adapters (TIES / DARE / Magnitude)…" (issue 11.5): N adapters with weights, a method
 * and a density → the preview (per-module sign conflicts, energy kept against density; nothing
 * written) in a panel → "Write merged adapter" → per-module errors and the verification badge.
 * The two-adapter cat/svd "Combine Adapters…" (features/surgery) is unchanged.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { MergePreview, MergeWrite } from '../../../shared/jobs';
import { MERGE_METHODS, methodUsesDensity, type MergeJobParams, type MergeMethod, type MergeView } from '../../../shared/merge';
import type { LensContext } from '../../context';
import { adapterName, askOutputFolder, registerBoundaryCommands, runJobWithProgress } from '../../ui';
import { pickAdapters } from '../report/pick';
import { PeersPanel } from '../report/peersPanel';

const METHOD_INFO: Record<MergeMethod, string> = {
  ties: 'TIES: trim to density, elect the majority sign, disjoint mean (factor level)',
  dare_ties: 'DARE + TIES: random drop (1 − density), rescale, sign election',
  dare_linear: 'DARE: random drop (1 − density), rescale by 1/density, weighted sum',
  magnitude_prune: 'keep the density fraction of largest-magnitude entries, weighted sum',
  linear: 'weighted sum of the factors (PEFT linear; rank = max rᵢ)',
  cat: 'exact: concatenate factors (rank Σ rᵢ)',
  svd: 'truncated SVD of Σ wᵢΔWᵢ (rank max rᵢ)',
  ties_svd: 'TIES on ΔW, then truncated SVD',
  dare_ties_svd: 'DARE + TIES on ΔW, then truncated SVD',
  dare_linear_svd: 'DARE on ΔW, then truncated SVD',
  magnitude_prune_svd: 'magnitude pruning on ΔW, then truncated SVD',
};

async function ask(ctx: LensContext, arg: unknown): Promise<{ params: MergeJobParams; names: string[] } | undefined> {
  const paths = await pickAdapters(ctx, arg, 'LoRA Lens: Combine Adapters (TIES / DARE / Magnitude)');
  if (!paths) return undefined;
  const names = paths.map(adapterName);
  const w = await vscode.window.showInputBox({
    title: 'Combine adapters: weights', prompt: `One weight per adapter, in order: ${names.join(', ')}`, value: paths.map(() => '1').join(', '),
    validateInput: (s) => {
      const xs = s.split(/[,\s]+/).filter(Boolean);
      return xs.length === paths.length && xs.every((x) => Number.isFinite(Number(x))) ? undefined : `${paths.length} numbers, e.g. "${paths.map(() => '1').join(', ')}"`;
    },
  });
  if (w === undefined) return undefined;
  const weights = w.split(/[,\s]+/).filter(Boolean).map(Number);
  const m = await vscode.window.showQuickPick(MERGE_METHODS.map((method) => ({ label: method, description: METHOD_INFO[method], method })), { title: 'Combine adapters: method' });
  if (!m) return undefined;
  let density: number | undefined;
  if (methodUsesDensity(m.method)) {
    const d = await vscode.window.showInputBox({
      title: `Combine adapters (${m.method}): density`, prompt: 'Fraction of entries kept, in (0, 1]', value: '0.5',
      validateInput: (s) => (Number(s) > 0 && Number(s) <= 1 ? undefined : 'A number in (0, 1]'),
    });
    if (d === undefined) return undefined;
    density = Number(d);
  }
  return { params: { paths, weights, method: m.method, density, seed: m.method.startsWith('dare') ? 0 : undefined }, names };
}

async function combineN(ctx: LensContext, arg: unknown): Promise<void> {
  const a = await ask(ctx, arg);
  if (!a) return;
  const { names } = a;
  let params = a.params;
  let preview;
  try {
    preview = await runJobWithProgress(ctx.worker, MergePreview, params, `LoRA Lens: previewing the ${params.method} merge`);
  } catch (e) {
    // Adapters made for different bases (core/base/match.ts): the user may go on, as with --force.
    const msg = e instanceof Error ? e.message : String(e);
    if (!/use --force/.test(msg)) throw e;
    const go = await vscode.window.showWarningMessage(`LoRA Lens: ${msg.replace(/ \(use --force[^)]*\)/, '')}`, { modal: true }, 'Combine anyway');
    if (go !== 'Combine anyway') return;
    params = { ...params, force: true };
    preview = await runJobWithProgress(ctx.worker, MergePreview, params, `LoRA Lens: previewing the ${params.method} merge`);
  }
  const key = `${Date.now()}`;
  const title = `Combine (${params.method}): ${names.join(' + ')}`.slice(0, 80);
  let view: MergeView = { kind: 'merge', params, names, preview };
  const panel = PeersPanel.show(ctx, key, title, view, {
    reportSource: () => ({ kind: 'merge', view }),
    preview: async (density) => {
      params = { ...params, density: methodUsesDensity(params.method) ? density ?? params.density : undefined };
      panel.update(view = { ...view, params, running: 'preview' });
      try {
        const p = await runJobWithProgress(ctx.worker, MergePreview, params, `LoRA Lens: previewing the ${params.method} merge`);
        panel.update(view = { ...view, params, preview: p, result: undefined, running: undefined });
      } catch (e) {
        panel.update(view = { ...view, running: undefined });
        throw e;
      }
    },
    write: async () => {
      const first = params.paths[0];
      const out = await askOutputFolder(first, `-${params.method.replace(/_/g, '-')}`, `Combine ${names.length} adapters (${params.method}): output folder`);
      if (!out) return undefined;
      panel.update(view = { ...view, running: 'write' });
      try {
        const result = await runJobWithProgress(ctx.worker, MergeWrite, { ...params, outDir: out }, `LoRA Lens: writing ${path.basename(out)}`);
        ctx.inspector.refresh();
        panel.update(view = { ...view, result, running: undefined }, `Combined: ${path.basename(out)}`);
        return result.verification.passed ? 'Written and verified' : 'Written; verification FAILED';
      } catch (e) {
        panel.update(view = { ...view, running: undefined });
        throw e;
      }
    },
  });
}

export function registerMerge(ctx: LensContext): void {
  registerBoundaryCommands(ctx.extension, { 'loraLens.combineAdaptersN': (arg) => combineN(ctx, arg) });
}
