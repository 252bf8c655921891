/**
 * `loraLens.convertAdapter` "LoRA Lens: Convert Adapter…": pick adapter (or tree node), target format, NEW output
 * path (save dialog), run `convert.adapter` in the worker with progress + cancel, show the round-trip error and
 * reveal the output in the inspector tree.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ConvertResult, ConvertTarget } from '../../../shared/convert';
import { verifiedText } from '../../../shared/base';
import { Convert } from '../../../shared/jobs';
import { CancelledError } from '../../../core/util/cancel';
import type { LensContext } from '../../context';
import { workspaceAdapters } from '../../inspectorTree';
import { errorMessage, log } from '../../log';
import { pathExists, argTarget } from '../../ui';

const TARGETS: { label: string; target: ConvertTarget; description: string; ext: string }[] = [
  { label: 'PEFT', target: 'peft', description: 'folder: adapter_config.json + adapter_model.safetensors', ext: '-peft' },
  { label: 'kohya', target: 'kohya', description: 'single .safetensors (lora_down / lora_up / alpha)', ext: '-kohya.safetensors' },
  { label: 'mlx-lm', target: 'mlx', description: 'folder: adapters.safetensors + lora_parameters', ext: '-mlx' },
  { label: 'GGUF (llama.cpp)', target: 'gguf', description: 'single .gguf LoRA adapter (Llama-style modules only)', ext: '.gguf' },
];


export async function convertCommand(ctx: LensContext, arg: unknown): Promise<ConvertResult | undefined> {
  const { worker, inspector } = ctx;
  let p = argTarget(arg).path;
  if (!p) {
    const refs = await workspaceAdapters(ctx.reader);
    if (!refs.length) { void vscode.window.showInformationMessage('LoRA Lens: no LoRA adapters found in this workspace.'); return undefined; }
    const pick = await vscode.window.showQuickPick(refs.map((r) => ({ label: r.name, detail: r.path, path: r.path })), { title: 'LoRA Lens: Convert Adapter', placeHolder: 'Adapter to convert' });
    if (!pick) return undefined;
    p = pick.path;
  }
  const t = await vscode.window.showQuickPick(TARGETS.map((x) => ({ ...x })), { title: `Convert ${path.basename(p)} to…`, placeHolder: 'Target format' });
  if (!t) return undefined;
  const stem = path.basename(p).replace(/\.(safetensors|gguf)$/i, '');
  let suggested = path.join(path.dirname(p), `${stem}${t.ext}`);
  for (let i = 2; await pathExists(suggested); i++) suggested = path.join(path.dirname(p), `${stem}-${i}${t.ext}`);
  const uri = await vscode.window.showSaveDialog({ defaultUri: vscode.Uri.file(suggested), title: `New ${t.label} adapter (never overwrites)`, saveLabel: 'Convert' });
  if (!uri) return undefined;
  const out = uri.fsPath;
  if (await pathExists(out)) throw new Error(`${out} already exists; LoRA Lens never overwrites files, choose a new path`);
  let architecture: string | undefined;
  const run = async (): Promise<ConvertResult> => vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `LoRA Lens: converting ${path.basename(p!)} to ${t.label}`, cancellable: true },
    (progress, token) => {
      let last = 0;
      return worker.run(Convert, { path: p, target: t.target, out, architecture }, {
        token: { get cancelled() { return token.isCancellationRequested; }, onCancellationRequested: (cb: () => void) => token.onCancellationRequested(cb) },
        onProgress: (done, total, message) => { const pct = total ? (100 * done) / total : 0; progress.report({ message, increment: pct - last }); last = pct; },
      });
    });
  let r: ConvertResult;
  try {
    r = await run();
  } catch (e) {
    if (t.target === 'gguf' && /general\.architecture/.test(errorMessage(e))) {
      architecture = await vscode.window.showInputBox({ title: 'GGUF general.architecture', prompt: 'Must match the base model in llama.cpp (e.g. llama, gemma, qwen2)', validateInput: (v) => (/^[a-z0-9_]+$/.test(v) ? undefined : 'lower-case name') });
      if (!architecture) return undefined;
      r = await run();
    } else throw e;
  }
  log.info(`convert ${p} → ${out}: max rel ΔW diff ${r.maxRelErr.toExponential(2)}; ${r.warnings.join(' | ')}`);
  inspector?.refresh();
  const msg = `LoRA Lens: wrote ${path.basename(out)} (${r.modules.length} modules). ${verifiedText(r.verification)} (round trip: max relative ΔW difference ${r.maxRelErr.toExponential(2)}, tolerance ${r.tolerance.toExponential(1)}).${r.warnings.length ? ` ${r.warnings.length} warning(s) in the log.` : ''}`;
  void vscode.window.showInformationMessage(msg, 'Reveal in Explorer').then((c) => { if (c) void vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(out)); });
  return r;
}

export function registerConvertFeature(ctx: LensContext): void {
  ctx.extension.subscriptions.push(vscode.commands.registerCommand('loraLens.convertAdapter', async (arg?: unknown) => {
    try {
      return await convertCommand(ctx, arg);
    } catch (e) {
      if (e instanceof CancelledError || /cancelled/.test(errorMessage(e))) { void vscode.window.showInformationMessage('LoRA Lens: conversion cancelled (no output kept).'); return undefined; }
      log.error(`loraLens.convertAdapter: ${errorMessage(e)}`);
      void vscode.window.showErrorMessage(`LoRA Lens: ${errorMessage(e)}`);
      return undefined;
    }
  }));
}
