/** Multi-adapter pick for similarity and N-adapter merges: the workspace's adapters, the argument's one pre-selected. */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LensContext } from '../../context';
import { workspaceAdapters } from '../../inspectorTree';
import { adapterArg } from '../../ui';

export async function pickAdapters(ctx: LensContext, arg: unknown, title: string, min = 2): Promise<string[] | undefined> {
  const pre = adapterArg(arg);
  const refs = await workspaceAdapters(ctx.reader);
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const items = refs.map((r) => ({ label: r.name, detail: root ? path.relative(root, r.path) || r.path : r.path, path: r.path, picked: r.path === pre }));
  if (pre && !items.some((i) => i.path === pre)) items.unshift({ label: path.basename(pre), detail: pre, path: pre, picked: true });
  if (items.length < min) {
    void vscode.window.showInformationMessage(`LoRA Lens: ${title} needs at least ${min} adapters; this workspace has ${items.length}.`);
    return undefined;
  }
  const picks = await vscode.window.showQuickPick(items, { title, canPickMany: true, placeHolder: `Select ${min} or more adapters`, matchOnDetail: true });
  if (!picks) return undefined;
  if (picks.length < min) {
    void vscode.window.showWarningMessage(`LoRA Lens: select at least ${min} adapters.`);
    return undefined;
  }
  return picks.map((p) => p.path);
}
