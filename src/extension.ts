/**
 * LoRA Lens extension entry: wires providers and commands; each provider owns its registration.
 */
import * as vscode from 'vscode';
import './core/formats/register';
import { CheckpointViewerProvider } from './host/checkpointViewer';
import { registerCommands } from './host/commands';
import { registerSurgery } from './host/features/surgery';
import { registerTraining } from './host/features/training';
import { registerBaseFeatures } from './host/features/base';
import { CheckpointHoverProvider } from './host/hover';
import { InspectorProvider } from './host/inspectorTree';
import { initLog, log } from './host/log';
import { ReportPanel } from './host/reportPanel';
import { EngineStatus } from './host/status';
import { registerResearchFeature } from './host/features/research';
import { registerConvertFeature } from './host/features/convert';
import { WorkerClient } from './worker/client';

let worker: WorkerClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  context.subscriptions.push(initLog());
  log.info(`LoRA Lens ${String((context.extension.packageJSON as { version?: string }).version ?? '')} activating`);
  worker = new WorkerClient(vscode.Uri.joinPath(context.extensionUri, 'dist', 'worker.js').fsPath);
  const inspector = InspectorProvider.register(context);
  CheckpointHoverProvider.register(context);
  CheckpointViewerProvider.register(context);
  const status = EngineStatus.register(context);
  context.subscriptions.push(ReportPanel.attachStatus(status));
  registerCommands(context, { extensionUri: context.extensionUri, worker, inspector, status });
  registerSurgery(context, { extensionUri: context.extensionUri, worker, inspector });
  registerTraining(context, { extensionUri: context.extensionUri, inspector });
  registerBaseFeatures(context, { worker, extensionUri: context.extensionUri, status, inspector });
  registerResearchFeature(context, { extensionUri: context.extensionUri, worker });
  registerConvertFeature(context, { worker, inspector });
  context.subscriptions.push({ dispose: () => ReportPanel.disposeAll() });
}

export async function deactivate(): Promise<void> {
  const w = worker;
  worker = undefined;
  await w?.dispose();
}
