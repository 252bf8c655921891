/**
 * Pieces shared by the analysis commands (intruders, spectra, esd, compare): one onnxruntime engine
 * per run (disposed at the end), number formatting, --jsonl line writing.
 */
import { Engine } from '../engine/ort';
import { UsageError } from './args';

/** Runs `fn` with a fresh CPU engine and disposes it. */
export async function withEngine<T>(fn: (e: Engine) => Promise<T>): Promise<T> {
  const engine = new Engine();
  try {
    return await fn(engine);
  } finally {
    await engine.dispose();
  }
}

/** One JSON object per line (non-finite numbers as strings, as toJson). */
export function jsonLine(o: unknown): void {
  process.stdout.write(JSON.stringify(o, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) + '\n');
}

export const g4 = (x: number | null | undefined): string => (x === null || x === undefined ? '—' : Number.isFinite(x) ? (Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(3)) : String(x));

/** A positive integer flag value. */
export function posInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${what} must be a positive integer, got ${v}`);
  return v;
}

/** Refuses extra positionals. */
export function positionals(args: string[], n: number, names: string): string[] {
  const unknown = args.filter((a) => a.startsWith('--'));
  if (unknown.length) throw new UsageError(`unknown option ${unknown[0]}`);
  if (args.length !== n) throw new UsageError(args.length < n ? `needs ${names}` : `unexpected argument ${args[n]}`);
  return args;
}
