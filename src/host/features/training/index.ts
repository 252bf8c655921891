/** LoRA / BaLoRA training in the UI: `loraLens.trainAdapter` opens the `loraLens.training` panel. */
import * as vscode from 'vscode';
import { WorkerClient } from '../../../worker/client';
import type { LensContext } from '../../context';
import { registerBoundaryCommands, revealInTree } from '../../ui';
import { TrainingPanel } from './trainingPanel';

export function registerTraining(deps: LensContext): void {
  const context = deps.extension;
  // A second worker for training so that analyses and surgery stay responsive meanwhile.
  let worker: WorkerClient | undefined;
  const trainingWorker = (): WorkerClient =>
    (worker ??= new WorkerClient(vscode.Uri.joinPath(deps.extensionUri, 'dist', 'worker.js').fsPath));
  registerBoundaryCommands(context, {
    'loraLens.trainAdapter': () => {
      TrainingPanel.show({
        extensionUri: deps.extensionUri, trainingWorker,
        reveal: () => revealInTree(() => deps.inspector.refresh()),
        refreshTree: () => deps.inspector.refresh(),
      });
    },
  });
  context.subscriptions.push({
    dispose: () => {
      TrainingPanel.disposeAll();
      void worker?.dispose();
      worker = undefined;
    },
  });
}
