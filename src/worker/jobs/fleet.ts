/**
 * Worker job `peers.fleet`: every adapter under a folder (src/core/fleet), records streamed to the
 * host as they are done (batched ≥ 100 ms apart). jobs: 1 — analyzeFleet's worker threads re-load
 * the bundle they run in, which is only right for the CLI; here the job's own engine is used.
 */
import * as fs from 'node:fs';
import { analyzeFleet, fleetPaths, type FleetEntry } from '../../core/fleet/fleet';
import { throwIfCancelled } from '../../core/formats/errors';
import type { FleetJobResult, FleetParams, FleetProgressData } from '../../shared/fleet';
import { Fleet } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

export async function fleetJob(p: FleetParams, ctx: JobContext<FleetProgressData>): Promise<FleetJobResult> {
  const t0 = performance.now();
  if (!fs.statSync(p.dir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`${p.dir} is not a folder`);
  const paths = fleetPaths(p.dir);
  const total = paths.length;
  ctx.progress(0, total, `${total} adapter candidates`, { entries: [] });
  let pending: FleetEntry[] = [];
  let last = 0, done = 0, failed = 0, bytes = 0;
  const flush = (msg: string): void => {
    ctx.progress(done, total, msg, { entries: pending });
    pending = [];
    last = performance.now();
  };
  for await (const e of analyzeFleet(p.dir, ctx.engine, { jobs: 1, paths })) {
    done++;
    if (!e.ok) failed++; else bytes += e.bytes;
    pending.push(e);
    if (performance.now() - last > 100 || done === total) flush(e.path);
    throwIfCancelled(ctx.token);
  }
  if (pending.length) flush('done');
  return { dir: p.dir, count: total, failed, bytes, ms: performance.now() - t0 };
}

export const fleetHandlers: JobHandler[] = [handle(Fleet, fleetJob)];
