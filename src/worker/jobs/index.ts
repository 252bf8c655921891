/** Every job handler of the worker, one list per feature, joined into one table (no import side effects). */
import { analyzeHandlers } from './analyze';
import { baseHandlers } from './base';
import { baseModelHandlers } from './baseModel';
import { convertHandlers } from './convert';
import { inspectHandlers } from './inspect';
import { JobTable } from './registry';
import { doctorHandlers } from './doctor';
import { doraHandlers } from './dora';
import { extractHandlers } from './extract';
import { fleetHandlers } from './fleet';
import { mergeHandlers } from './merge';
import { reportHandlers } from './report';
import { similarityHandlers } from './similarity';
import { researchHandlers } from './research';
import { surgeryHandlers } from './surgery';
import { trainingHandlers } from './training';

export function createJobTable(): JobTable {
  return new JobTable([...analyzeHandlers, ...surgeryHandlers, ...trainingHandlers, ...baseHandlers, ...researchHandlers, ...convertHandlers, ...inspectHandlers, ...baseModelHandlers,
    ...doctorHandlers, ...similarityHandlers, ...fleetHandlers, ...mergeHandlers, ...extractHandlers, ...reportHandlers, ...doraHandlers]);
}
