/** Host helpers shared by all features: argument → path, pickers, worker jobs with progress, command error boundary. */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Job } from '../shared/jobs';
import { asProvider, type Provider } from '../shared/provider';
import type { JobOptions, WorkerClient } from '../worker/client';
import { CancelledError } from '../core/util/cancel';
import { CheckpointNode, workspaceAdapters } from './inspectorTree';
import { errorMessage, log, showLog } from './log';
import { progressText } from '../shared/format';

export function providerSetting(): Provider {
  return asProvider(vscode.workspace.getConfiguration('loraLens').get<string>('executionProvider', 'cpu'));
}

/** What a command argument points at: an adapter (and maybe one of its modules) or a weights file. */
export interface ArgTarget {
  /** The adapter, else the file (undefined: the argument names nothing on disk). */
  path?: string;
  adapter?: string;
  module?: string;
  file?: string;
  /** True when the argument is a Checkpoints tree row. */
  fromTree?: boolean;
}

/**
 * The one "path from a command argument" helper (tree rows, context menus, command links, the
 * palette): a checkpoint row (adapter or file; a file row's viewer file), a module row (its adapter
 * and module), a Uri (file scheme only), a path or `file:` URI string, a Uri-like JSON object
 * (`{fsPath}`, `{scheme, path}`) or a `{ref: {path}, isAdapter}` object.
 */
export function argTarget(arg: unknown): ArgTarget {
  if (!arg) return {};
  if (arg instanceof CheckpointNode) {
    return arg.isAdapter ? { path: arg.ref.path, adapter: arg.ref.path, fromTree: true } : { path: arg.viewerFile, file: arg.viewerFile, fromTree: true };
  }
  if (arg instanceof vscode.Uri) return arg.scheme === 'file' ? { path: arg.fsPath, file: arg.fsPath } : {};
  if (typeof arg === 'string') {
    const f = arg.startsWith('file:') ? vscode.Uri.parse(arg).fsPath : arg;
    return { path: f, file: f };
  }
  if (typeof arg === 'object') {
    const o = arg as { fsPath?: unknown; path?: unknown; scheme?: unknown; ref?: { path?: unknown }; isAdapter?: unknown; module?: { name?: unknown }; parent?: { parent?: { ref?: { path?: unknown } } } };
    if (o.module && typeof o.module.name === 'string' && typeof o.parent?.parent?.ref?.path === 'string') {
      const a = o.parent.parent.ref.path;
      return { path: a, adapter: a, module: o.module.name, fromTree: true };
    }
    if (o.ref && typeof o.ref.path === 'string') {
      return o.isAdapter === false ? { path: o.ref.path, file: o.ref.path, fromTree: true } : { path: o.ref.path, adapter: o.ref.path, fromTree: true };
    }
    if (typeof o.fsPath === 'string') return { path: o.fsPath, file: o.fsPath };
    if (typeof o.path === 'string' && (o.scheme === undefined || o.scheme === 'file')) {
      const f = vscode.Uri.file(o.path).fsPath;
      return { path: f, file: f };
    }
  }
  return {};
}

/** Adapter path from a command argument (a weights-file tree row is not an adapter: undefined). */
export function adapterArg(arg: unknown): string | undefined {
  const t = argTarget(arg);
  return t.fromTree && !t.adapter ? undefined : t.path;
}

/** True when `p` exists (async: the host never blocks on the file system). */
export const pathExists = (p: string): Promise<boolean> => fsp.access(p).then(() => true, () => false);

export async function pickAdapter(reader: WorkerClient, title: string, exclude?: string): Promise<string | undefined> {
  const refs = (await workspaceAdapters(reader)).filter((r) => r.path !== exclude);
  if (refs.length === 0) {
    void vscode.window.showInformationMessage('LoRA Lens: no LoRA adapters found in this workspace.');
    return undefined;
  }
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const pick = await vscode.window.showQuickPick(
    refs.map((r) => ({ label: r.name, detail: root ? path.relative(root, r.path) || r.path : r.path, path: r.path })),
    { title, placeHolder: 'Select an adapter', matchOnDetail: true },
  );
  return pick?.path;
}

export async function adapterFromArgOrPick(reader: WorkerClient, arg: unknown, title: string): Promise<string | undefined> {
  const p = adapterArg(arg) ?? (await pickAdapter(reader, title));
  if (p && !(await pathExists(p))) throw new Error(`${p} does not exist`);
  return p;
}

/** Display name of an adapter path: a weights file's name without its extension, else the folder name. */
export function adapterName(p: string): string {
  return /\.(safetensors|gguf|bin|pt|pth|ckpt)$/i.test(p) ? path.basename(p, path.extname(p)) : path.basename(p);
}

/**
 * Asks for the name of a NEW output folder created next to `adapterPath`; refuses names that exist
 * (the core writers refuse them too). Returns the absolute path.
 */
export async function askOutputFolder(adapterPath: string, suffix: string, title: string): Promise<string | undefined> {
  const parent = path.dirname(adapterPath);
  let name = `${adapterName(adapterPath)}${suffix}`;
  for (let i = 2; (await pathExists(path.join(parent, name))) && i < 100; i++) name = `${adapterName(adapterPath)}${suffix}-${i}`;
  const v = await vscode.window.showInputBox({
    title, value: name, valueSelection: [0, name.length],
    prompt: `New folder next to the adapter (in ${parent}); existing paths are refused.`,
    validateInput: async (s) => {
      const t = s.trim();
      if (!t) return 'Enter a folder name';
      if (/[\\/]/.test(t) || t === '.' || t === '..') return 'A plain folder name, without path separators';
      if (await pathExists(path.join(parent, t))) return `${t} already exists; LoRA Lens never overwrites`;
      return undefined;
    },
  });
  return v?.trim() ? path.join(parent, v.trim()) : undefined;
}

/** Worker-client progress/cancel options bound to a VS Code progress report and cancellation token. */
export function jobProgress(progress: vscode.Progress<{ message?: string; increment?: number }>, token: vscode.CancellationToken): Required<Pick<JobOptions, 'onProgress' | 'token'>> {
  let last = 0;
  return {
    onProgress: (done, total, message) => {
      const pct = total > 0 ? (100 * done) / total : 0;
      progress.report({ message: progressText(message, done, total), increment: Math.max(0, pct - last) });
      last = Math.max(last, pct);
    },
    token: {
      get cancelled() { return token.isCancellationRequested; },
      onCancellationRequested: (cb: () => void) => token.onCancellationRequested(cb),
    },
  };
}

/** Runs a worker job under a cancellable notification progress. */
export function runJobWithProgress<P, R>(worker: WorkerClient, job: Job<P, R>, params: P, title: string): Promise<R> {
  const ep = providerSetting();
  log.info(`${job.kind} ${JSON.stringify(params)} (provider ${ep})`);
  return Promise.resolve(vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title, cancellable: true },
    (progress, token) => worker.run(job, params, { provider: ep, ...jobProgress(progress, token) }),
  ));
}

/** An error toast with a "Show log" action (the details are in the LoRA Lens output channel). */
export function showErrorWithLog(message: string): void {
  void vscode.window.showErrorMessage(message, 'Show log').then((a) => { if (a) showLog(); });
}

/** A warning toast with a "Show log" action (wherever warnings are mentioned). */
export function showWarningWithLog(message: string): void {
  void vscode.window.showWarningMessage(message, 'Show log').then((a) => { if (a) showLog(); });
}

/** Registers commands with one error boundary each (cancel → info, failure → error message + log). */
export function registerBoundaryCommands(context: vscode.ExtensionContext, commands: Record<string, (...args: unknown[]) => unknown>): void {
  for (const [id, fn] of Object.entries(commands)) {
    context.subscriptions.push(vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        await fn(...args);
      } catch (e) {
        if (e instanceof CancelledError || (e instanceof Error && e.name === 'CancelledError')) {
          log.info(`${id}: cancelled`);
          void vscode.window.showInformationMessage('LoRA Lens: cancelled; nothing was written.');
          return;
        }
        log.error(`${id}: ${errorMessage(e)}`);
        showErrorWithLog(`LoRA Lens: ${errorMessage(e)}`);
      }
    }));
  }
}

/** Refreshes the Checkpoints tree and shows the LoRA Lens view. */
export async function revealInTree(refresh: () => void, focus = true): Promise<void> {
  refresh();
  if (focus) await vscode.commands.executeCommand('workbench.view.extension.loraLens');
}
