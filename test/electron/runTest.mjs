// @vscode/test-electron runner: launches a desktop VS Code with the extension under development
// and runs test/electron/suite/index.cjs inside its extension host.
//
// Runs only when VSCODE_EXECUTABLE points at a VS Code binary (nothing is downloaded: the CI
// machines reach only the npm registry). Otherwise prints SKIP and exits 0.
//   VSCODE_EXECUTABLE=/usr/share/code/code node test/electron/runTest.mjs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const exe = process.env.VSCODE_EXECUTABLE;

if (!exe || !fs.existsSync(exe)) {
  console.log('SKIP: @vscode/test-electron suite: no VS Code binary (set VSCODE_EXECUTABLE)');
  if (exe) console.log(`  (VSCODE_EXECUTABLE=${exe} does not exist)`);
  process.exit(0);
}

const { runTests } = await import('@vscode/test-electron');
const workspace = fs.existsSync(path.join(repo, 'demo-workspace')) ? path.join(repo, 'demo-workspace') : repo;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-electron-'));
try {
  await runTests({
    vscodeExecutablePath: exe,
    extensionDevelopmentPath: repo,
    extensionTestsPath: path.join(here, 'suite', 'index.cjs'),
    launchArgs: [
      workspace,
      '--disable-extensions', // other installed extensions; the one under development still loads
      '--disable-workspace-trust',
      '--skip-welcome',
      '--skip-release-notes',
      `--user-data-dir=${userDataDir}`,
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      ...(process.env.DISPLAY ? [] : ['--disable-gpu']),
    ],
    extensionTestsEnv: { LORA_LENS_ELECTRON_TEST: '1' },
  });
  console.log('@vscode/test-electron suite passed');
} catch (err) {
  console.error(`@vscode/test-electron suite failed: ${err?.message ?? err}`);
  process.exitCode = 1;
} finally {
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
