/**
 * Argument helpers shared by every CLI command (src/core/cli/*.ts). Each command file exports a
 * `CliCommand`; src/core/cli.ts lists them once. Flags are removed from `args` as they are read, so
 * what is left are the positionals.
 */
export interface CliCommand {
  /** The word after `lora-lens`. */
  name: string;
  /** One or more usage lines, shown by `lora-lens --help` and on a usage error. */
  usage: string;
  /** Runs the command on its arguments (without the command word); returns the exit code. */
  run(args: string[]): Promise<number>;
}

/** Error for a malformed command line: printed with the command's usage, exit code 2. */
export class UsageError extends Error {}

/** Removes `--name VALUE` from args and returns VALUE (undefined when absent). */
export function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new UsageError(`${name} needs a value`);
  args.splice(i, 2);
  return v;
}

/** Removes `--name` from args and says whether it was there. */
export function bool(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
}

/** A finite number from a flag value or positional; `what` names it in the error. */
export function num(v: string, what: string): number {
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x)) throw new UsageError(`${what}: "${v}" is not a finite number`);
  return x;
}

/** A numeric flag with a default. */
export function numFlag(args: string[], name: string, def: number): number {
  const v = flag(args, name);
  return v === undefined ? def : num(v, name);
}

/** JSON for stdout: non-finite numbers become the strings "Infinity", "-Infinity", "NaN". */
export function toJson(o: unknown): string {
  return JSON.stringify(o, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1);
}
