/** Small JSON config files (adapter_config.json, config.json): size cap, placeholder detection, FormatError naming the file. */
import { FormatError } from '../formats/errors';
import { RangeFile, sniffPlaceholder } from '../formats/fileio';
import { parseJsonText } from '../formats/safejson';
import { MAX_HEADER_VALUES } from '../formats/safetensors';

/** Reads a small JSON file with size cap and placeholder detection. */
export function readJsonFile(file: string, maxBytes = 16_000_000): Record<string, unknown> {
  const f = RangeFile.open(file);
  let text: string;
  try {
    if (f.size > maxBytes) throw new FormatError(file, `is ${f.size} bytes, larger than the ${maxBytes}-byte limit for a config file`);
    const bytes = f.read(0, f.size);
    text = Buffer.from(bytes).toString('utf8');
    if (!text.trimStart().startsWith('{')) {
      const p = sniffPlaceholder(bytes, f.size);
      throw new FormatError(file, p ?? `is not a JSON object (starts with ${JSON.stringify(text.slice(0, 20))})`);
    }
  } finally {
    f.close();
  }
  // depth/value-capped parse (formats/safejson.ts): hostile nesting is a FormatError, never a stack overflow
  const v = parseJsonText(text, file, 'the file', MAX_HEADER_VALUES);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError(file, 'is not valid JSON (not an object)');
  return v as Record<string, unknown>;
}
