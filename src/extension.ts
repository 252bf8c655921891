/**
 * LoRA Lens extension entry: starts the two workers (jobs, header reads), builds the one LensContext and
 * passes it to every feature's register(ctx).
 */
import * as vscode from 'vscode';
import { CheckpointViewerProvider } from './host/checkpointViewer';
import { registerCommands } from './host/commands';
import { registerSurgery } from './host/features/surgery';
import { registerTraining } from './host/features/training';
import { registerBaseFeatures } from './host/features/base';
import { CheckpointHoverProvider } from './host/hover';
import { InspectorProvider } from './host/inspectorTree';
import type { LensContext } from './host/context';
import { initLog, log } from './host/log';
import { ReportPanel } from './host/reportPanel';
import { EngineStatus } from './host/status';
import { registerResearchFeature } from './host/features/research';
import { registerConvertFeature } from './host/features/convert';
import { registerDoctor } from './host/features/doctor';
import { registerSimilarity } from './host/features/similarity';
import { registerFleet } from './host/features/fleet';
import { registerMerge } from './host/features/merge';
import { registerExtract } from './host/features/extract';
import { registerReport } from './host/features/report';
import { registerDora } from './host/features/dora';
import { WorkerClient } from './worker/client';

let worker: WorkerClient | undefined;
let reader: WorkerClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  context.subscriptions.push(initLog());
  log.info(`LoRA Lens ${String((context.extension.packageJSON as { version?: string }).version ?? '')} activating`);
  const script = vscode.Uri.joinPath(context.extensionUri, 'dist', 'worker.js').fsPath;
  worker = new WorkerClient(script);
  reader = new WorkerClient(script);
  const inspector = InspectorProvider.register(context, reader);
  const status = EngineStatus.register(context);
  const ctx: LensContext = { extension: context, extensionUri: context.extensionUri, worker, reader, inspector, status };
  CheckpointHoverProvider.register(context, reader);
  CheckpointViewerProvider.register(context, reader);
  context.subscriptions.push(ReportPanel.attachStatus(status));
  for (const register of [registerCommands, registerSurgery, registerTraining, registerBaseFeatures, registerResearchFeature, registerConvertFeature,
    registerReport, registerDoctor, registerSimilarity, registerFleet, registerMerge, registerExtract, registerDora]) register(ctx);
  context.subscriptions.push({ dispose: () => ReportPanel.disposeAll() });
}

export async function deactivate(): Promise<void> {
  const ws = [worker, reader];
  worker = reader = undefined;
  await Promise.all(ws.map((w) => w?.dispose()));
}
