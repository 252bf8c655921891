/** Worker job `peers.doctor`: the adapter doctor (src/core/doctor) for the editor's diagnostics and findings panel. */
import { openBaseModel } from '../../core/base/basemodel';
import { DOCTOR_CODES, doctorAdapter } from '../../core/doctor/doctor';
import { openAdapter } from '../../core/formats/open';
import type { DoctorJobResult, DoctorParams } from '../../shared/doctor';
import { Doctor } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

export async function doctorJob(p: DoctorParams, ctx: JobContext): Promise<DoctorJobResult> {
  const t0 = performance.now();
  const adapter = openAdapter(p.path);
  const base = p.base ? openBaseModel(p.base) : undefined;
  try {
    ctx.progress(0, 1, 'analysing');
    const { report: _report, thresholds: _th, ...d } = await doctorAdapter(adapter, { engine: ctx.engine, base });
    const codeInfo = Object.fromEntries(Object.entries(DOCTOR_CODES).map(([k, v]) => [k, v.what]));
    return { ...d, codeInfo, ms: performance.now() - t0 };
  } finally {
    adapter.store.close();
    base?.store.close();
  }
}

export const doctorHandlers: JobHandler[] = [handle(Doctor, doctorJob)];
