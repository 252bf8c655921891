// README screenshots, produced by the e2e harness: runs the extension / base / surgery / training e2e
// tests (against the packaged .vsix when E2E_VSIX is set, else the development tree) with
// E2E_KEEP_SHOTS, then writes a few of their step screenshots, downscaled to 800 px wide and
// quantised to a 256-colour palette (Pillow, /usr/bin/python3), to media/screenshots/*.png.
//
//   node scripts/build.mjs && node dist/cli.js demo demo-workspace && node scripts/screenshots.mjs
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(REPO, 'media', 'screenshots');
// e2e step screenshot → README screenshot
const PICK = {
  'ext-08-report-table': 'analyze',
  'base-04-intruders-heatmap': 'intruders',
  'surgery-03-rebalance-view': 'rebalance',
  'training-04-finished': 'training',
  'model-03-resumed': 'analyze-model',
  'peers-01-doctor': 'doctor',
  'peers-05-similarity': 'similarity',
  'tree-07-sd-report': 'sd-report',
};
const FILES = ['extension', 'base', 'surgery', 'training', 'model', 'peers', 'tree'].map((f) => `test/e2e/${f}.e2e.mjs`);

const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-shots-'));
try {
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...FILES], { cwd: REPO, stdio: 'inherit', env: { ...process.env, E2E_KEEP_SHOTS: keep } });
  if (r.status !== 0) console.error('[screenshots] some e2e tests failed; using the screenshots that exist');
  fs.mkdirSync(OUT, { recursive: true });
  const pairs = Object.entries(PICK).filter(([shot]) => fs.existsSync(path.join(keep, `${shot}.png`)));
  const missing = Object.keys(PICK).filter((s) => !pairs.some(([x]) => x === s));
  if (missing.length) console.error(`[screenshots] missing: ${missing.join(', ')}`);
  const py = `
import sys
from PIL import Image
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    im = Image.open(src).convert('RGB')
    w = 800
    im = im.resize((w, round(im.height * w / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
`;
  execFileSync('/usr/bin/python3', ['-c', py, ...pairs.flatMap(([shot, name]) => [path.join(keep, `${shot}.png`), path.join(OUT, `${name}.png`)])], { stdio: 'inherit' });
  for (const [, name] of pairs) console.log(`[screenshots] media/screenshots/${name}.png ${(fs.statSync(path.join(OUT, `${name}.png`)).size / 1024).toFixed(0)} KB`);
} finally {
  fs.rmSync(keep, { recursive: true, force: true });
}
