/**
 * "Extract LoRA from Fine-tune…" (issue 11.4): base + fine-tuned model folders, a rank k or an
 * sv_fro fraction → a NEW PEFT adapter folder; the panel streams per-module progress and ends in
 * the result table (rank, relative error, optimality).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ExtractRuleView, ExtractView } from '../../../shared/extract';
import { Extract } from '../../../shared/jobs';
import type { LensContext } from '../../context';
import { errorMessage } from '../../log';
import { jobProgress, pathExists, providerSetting, registerBoundaryCommands } from '../../ui';
import { PeersPanel } from '../report/peersPanel';

/** Model folders of the workspace (a model.safetensors[.index.json] inside), then "Browse…". */
async function pickModel(title: string, exclude?: string): Promise<string | undefined> {
  const found = await vscode.workspace.findFiles('**/{model.safetensors,model.safetensors.index.json}', '**/node_modules/**', 500);
  const dirs = [...new Set(found.map((u) => path.dirname(u.fsPath)))].filter((d) => d !== exclude).sort();
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const items: (vscode.QuickPickItem & { dir?: string })[] = dirs.map((d) => ({ label: path.basename(d), description: root ? path.relative(root, d) : d, dir: d }));
  items.push({ label: '$(folder-opened) Browse…', description: 'a model folder or .safetensors file elsewhere' });
  const pick = await vscode.window.showQuickPick(items, { title, placeHolder: 'Model folder (config.json + model.safetensors)' });
  if (!pick) return undefined;
  if (pick.dir) return pick.dir;
  const sel = await vscode.window.showOpenDialog({
    canSelectFolders: true, canSelectFiles: true, canSelectMany: false, title, openLabel: 'Select',
    defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri, filters: { 'Model weights': ['safetensors', 'json'] },
  });
  return sel?.[0]?.fsPath;
}

async function askRule(): Promise<ExtractRuleView | undefined> {
  const pick = await vscode.window.showQuickPick([
    { label: 'Fixed rank k', description: 'best rank-k approximation of W_tuned − W0 per module (Eckart–Young)', rule: 'rank' as const },
    { label: 'sv_fro x', description: 'per module, the smallest rank keeping a fraction x of ‖W_tuned − W0‖_F', rule: 'sv_fro' as const },
  ], { title: 'Extract LoRA: rank rule' });
  if (!pick) return undefined;
  const kind = { label: pick.label, kind: pick.rule };
  const v = await vscode.window.showInputBox({
    title: `Extract LoRA: ${kind.label}`, value: kind.kind === 'rank' ? '8' : '0.9',
    prompt: kind.kind === 'rank' ? 'Rank k (integer ≥ 1)' : 'Frobenius fraction x in (0, 1]',
    validateInput: (s) => {
      const x = Number(s);
      if (kind.kind === 'rank') return Number.isInteger(x) && x >= 1 ? undefined : 'An integer ≥ 1';
      return x > 0 && x <= 1 ? undefined : 'A number in (0, 1]';
    },
  });
  if (v === undefined) return undefined;
  return kind.kind === 'rank' ? { kind: 'rank', k: Number(v) } : { kind: 'sv_fro', value: Number(v) };
}

async function askOut(tuned: string, rule: ExtractRuleView): Promise<string | undefined> {
  const parent = path.dirname(tuned.replace(/[\\/](model\.safetensors(\.index\.json)?|[^\\/]+\.safetensors)$/, ''));
  const stem = `${path.basename(tuned.replace(/[\\/](model\.safetensors(\.index\.json)?)$/, '')).replace(/\.safetensors$/, '')}-lora-${rule.kind === 'rank' ? `r${rule.k}` : `fro${rule.value}`}`;
  let name = stem;
  for (let i = 2; (await pathExists(path.join(parent, name))) && i < 100; i++) name = `${stem}-${i}`;
  const v = await vscode.window.showInputBox({
    title: 'Extract LoRA: output folder', value: name, prompt: `New adapter folder in ${parent}; existing paths are refused.`,
    validateInput: async (s) => {
      const t = s.trim();
      if (!t || /[\\/]/.test(t)) return 'A plain folder name';
      return (await pathExists(path.join(parent, t))) ? `${t} already exists; LoRA Lens never overwrites` : undefined;
    },
  });
  return v?.trim() ? path.join(parent, v.trim()) : undefined;
}

async function extract(ctx: LensContext, arg: unknown): Promise<void> {
  const base = await pickModel('Extract LoRA: BASE model (folder or .safetensors)');
  if (!base) return;
  const tuned = typeof arg === 'string' ? arg : arg instanceof vscode.Uri ? arg.fsPath : await pickModel('Extract LoRA: FINE-TUNED model (folder or .safetensors)', base);
  if (!tuned) return;
  const rule = await askRule();
  if (!rule) return;
  const outDir = await askOut(tuned, rule);
  if (!outDir) return;
  const params = { base, tuned, outDir, rule };
  let view: ExtractView = { kind: 'extract', params, log: [], done: 0, total: 0 };
  const panel = PeersPanel.show(ctx, outDir, `Extract: ${path.basename(outDir)}`, view, { reportSource: () => (view.result ? { kind: 'extract', view } : undefined) });
  try {
    const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LoRA Lens: extracting ${path.basename(outDir)}`, cancellable: true }, (progress, token) => {
      const pr = jobProgress(progress, token);
      return ctx.worker.run(Extract, params, {
        provider: providerSetting(), token: pr.token,
        onProgress: (done, total, message) => {
          pr.onProgress(done, total, message);
          view = { ...view, done, total, log: [...view.log, message].slice(-2000) };
          panel.progress(message, done, total);
        },
      });
    });
    ctx.inspector.refresh();
    panel.update(view = { ...view, result }, `Extracted: ${path.basename(outDir)}`);
  } catch (e) {
    panel.update(view = { ...view, error: errorMessage(e) });
    throw e;
  }
}

export function registerExtract(ctx: LensContext): void {
  registerBoundaryCommands(ctx.extension, { 'loraLens.extractLora': (arg) => extract(ctx, arg) });
}
