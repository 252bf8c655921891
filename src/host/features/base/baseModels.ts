/**
 * Base model of each adapter: chosen by the user (stored per adapter path in workspaceState) or
 * detected from base_model_name_or_path (relative to the adapter folder, or absolute) when it is a
 * local model folder. Hub ids get detectBaseModel's message and a "Set Base Model…" button.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { BaseResolution } from '../../../shared/base';
import { ResolveBase, ValidateBase } from '../../../shared/jobs';
import type { WorkerClient } from '../../../worker/client';
import { errorMessage, log } from '../../log';
import { pathExists } from '../../ui';

const KEY = 'loraLens.baseModels';

export class BaseModelStore {
  constructor(private readonly state: vscode.Memento, readonly reader: WorkerClient) {}

  private all(): Record<string, string> {
    return this.state.get<Record<string, string>>(KEY, {});
  }

  async get(adapterPath: string): Promise<string | undefined> {
    const v = this.all()[path.resolve(adapterPath)];
    return v && (await pathExists(path.join(v, 'config.json'))) ? v : undefined;
  }

  async set(adapterPath: string, dir: string | undefined): Promise<void> {
    const all = { ...this.all() };
    if (dir) all[path.resolve(adapterPath)] = dir;
    else delete all[path.resolve(adapterPath)];
    await this.state.update(KEY, all);
  }
}

/** Rejects when `dir` is not a model folder (config.json + model.safetensors or an index); read by the reader worker. */
async function validateBaseFolder(store: BaseModelStore, dir: string): Promise<void> {
  await store.reader.run(ValidateBase, { dir });
}

type Detection = BaseResolution;

/** The one base-model resolver (core/base/resolve.ts), run by the reader worker. */
function detect(store: BaseModelStore, adapterPath: string): Promise<Detection> {
  return store.reader.run(ResolveBase, { adapterPath });
}

/**
 * Quick pick: the detected folder (if any), the stored one, or a folder dialog. Returns the chosen
 * folder (validated and stored) or undefined when dismissed.
 */
export async function chooseBaseModel(store: BaseModelStore, adapterPath: string): Promise<string | undefined> {
  const name = path.basename(adapterPath);
  let det: Detection = {};
  try {
    det = await detect(store, adapterPath);
  } catch (e) {
    log.warn(`base model detection for ${adapterPath}: ${errorMessage(e)}`);
  }
  const current = await store.get(adapterPath);
  type Item = vscode.QuickPickItem & { dir?: string; action?: 'browse' | 'clear' };
  const items: Item[] = [];
  const adapterDir = (await fsp.stat(adapterPath).catch(() => undefined))?.isDirectory() ? adapterPath : path.dirname(adapterPath);
  const rel = (d: string): string => path.relative(adapterDir, d) || d;
  if (det.dir) items.push({ label: `$(sparkle) ${path.basename(det.dir)}`, description: 'detected from base_model_name_or_path', detail: det.dir, dir: det.dir });
  if (current && current !== det.dir) items.push({ label: `$(check) ${path.basename(current)}`, description: 'current', detail: current, dir: current });
  items.push({ label: '$(folder-opened) Choose a model folder…', description: 'config.json + model.safetensors or *.safetensors.index.json', action: 'browse' });
  if (current) items.push({ label: '$(clear-all) Forget the stored base model', action: 'clear' });
  const pick = await vscode.window.showQuickPick(items, {
    title: `LoRA Lens: Set Base Model — ${name}`,
    placeHolder: det.message ?? (det.dir ? `Detected ${rel(det.dir)}` : 'Select the base model folder'),
    matchOnDetail: true,
  });
  if (!pick) return undefined;
  if (pick.action === 'clear') {
    await store.set(adapterPath, undefined);
    void vscode.window.showInformationMessage(`LoRA Lens: base model of ${name} forgotten.`);
    return undefined;
  }
  let dir = pick.dir;
  if (pick.action === 'browse') {
    const uris = await vscode.window.showOpenDialog({
      canSelectFiles: false, canSelectFolders: true, canSelectMany: false, title: `Base model folder for ${name}`,
      openLabel: 'Use as Base Model', defaultUri: vscode.Uri.file(path.dirname(adapterPath)),
    });
    dir = uris?.[0]?.fsPath;
    if (!dir) return undefined;
  }
  if (!dir) return undefined;
  await validateBaseFolder(store, dir);
  await store.set(adapterPath, dir);
  log.info(`base model of ${adapterPath}: ${dir}`);
  void vscode.window.showInformationMessage(`LoRA Lens: base model of ${name} is ${path.basename(dir)} (${dir}).`);
  return dir;
}

/**
 * The base model folder of an adapter: stored, else detected (and remembered), else the detection
 * message with a "Set Base Model…" button. Undefined when the user gives none.
 */
export async function resolveBaseModel(store: BaseModelStore, adapterPath: string): Promise<string | undefined> {
  const stored = await store.get(adapterPath);
  if (stored) return stored;
  const det = await detect(store, adapterPath);
  if (det.dir) {
    await validateBaseFolder(store, det.dir);
    await store.set(adapterPath, det.dir);
    log.info(`base model of ${adapterPath} detected: ${det.dir}`);
    return det.dir;
  }
  const choice = await vscode.window.showWarningMessage(`LoRA Lens: ${det.message ?? 'no base model found'}`, 'Set Base Model…');
  if (choice !== 'Set Base Model…') return undefined;
  return chooseBaseModel(store, adapterPath);
}
