/**
 * `lora-lens doctor PATH [--json] [--base DIR] [--intruders auto|exact|approx] [--provider cpu|webgpu|cuda]`
 * Lints an adapter (src/core/doctor). JSON: {"adapter", "findings": [{module, code, severity,
 * message, file, line?, tensor?, suggestion?}], "summary", "thresholds"}. Exit 0 when the doctor
 * ran (findings are results, not failures); 1 when the adapter cannot be read.
 */
import { openAdapter } from '../formats/open';
import { Engine, ExecutionProvider } from '../engine/ort';
import { openBaseModel } from '../base/basemodel';
import { doctorAdapter, DoctorResult } from '../doctor/doctor';
import { bool, CliCommand, flag, toJson, UsageError } from './args';

export function formatDoctor(r: DoctorResult): string {
  const s = r.summary;
  const lines = [`${r.adapter.name} (${r.adapter.format}): ${s.modules} modules, ${s.error} error(s), ${s.warning} warning(s), ${s.info} info`];
  for (const f of r.findings) lines.push(`${f.severity.padEnd(7)} ${f.code.padEnd(20)} ${f.message}`);
  if (r.findings.length === 0) lines.push('no findings');
  return lines.join('\n');
}

export const doctorCommand: CliCommand = {
  name: 'doctor',
  usage: 'lora-lens doctor PATH [--json] [--base DIR] [--intruders auto|exact|approx] [--provider cpu|webgpu|cuda]\n      lint an adapter: untrained/NaN/dead modules, scale surprises, targets, rank, balance, underflow, intruders (codes: docs/doctor.md)',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json');
    const baseDir = flag(args, '--base');
    const mode = flag(args, '--intruders') ?? 'auto';
    if (!['auto', 'exact', 'approx'].includes(mode)) throw new UsageError(`--intruders must be auto, exact or approx, not "${mode}"`);
    const provider = (flag(args, '--provider') ?? 'cpu') as ExecutionProvider;
    if (args.length !== 1) throw new UsageError(args.length ? `expected one PATH, got ${args.join(' ')}` : 'PATH is missing');
    const adapter = openAdapter(args[0]);
    const engine = new Engine({ provider });
    const base = baseDir ? openBaseModel(baseDir) : undefined;
    try {
      const r = await doctorAdapter(adapter, { engine, base, intruderMode: mode as 'auto' });
      const { report: _report, ...out } = r;
      console.log(json ? toJson(out) : formatDoctor(out));
      return 0;
    } finally {
      adapter.store.close();
      base?.store.close();
      await engine.dispose();
    }
  },
};
