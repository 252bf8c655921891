/**
 * Fleet webview (`loraLens.fleet`): one row per adapter under a folder, streamed as the worker
 * finishes them; sortable columns, a text filter, format / findings filters; a row's name opens
 * its analysis report. Rows carry data-path / data-ok; cells data-metric / data-value.
 */
import type { FleetEntryView, FleetRecordView, FleetView } from '../../src/shared/fleet';
import { act, badge, bytes, card, connect, fact, h, header, SortTable } from '../peers/ui';

let view: FleetView | undefined;
const app = document.getElementById('app')!;
let table: SortTable<FleetEntryView> | undefined;
let built = false;
const filters = { text: '', format: '', findings: false, failed: false };

const channel = connect((m) => {
  if ((m.type === 'init' || m.type === 'update') && m.view.kind === 'fleet') { view = m.view; render(); }
  else if (m.type === 'append' && view) {
    view.entries.push(...m.entries);
    view.done = m.done;
    view.total = m.total;
    table?.setRows(view.entries);
    updateFacts();
  }
});

const rec = (f: (r: FleetRecordView) => number | string | null) => (e: FleetEntryView): number | string | null => (e.ok ? f(e) : null);
const nameOf = (e: FleetEntryView): string => (e.ok ? e.name : e.path.split(/[\\/]/).slice(-2).join('/'));
/** The reason without the path the row already names. */
const reason = (e: { path: string; error: string }): string => (e.error.startsWith(e.path) ? e.error.slice(e.path.length).replace(/^[:\s]+/, '') : e.error);

function nameCell(e: FleetEntryView): HTMLElement {
  const a = h('a', { href: '#', class: 'loc', title: `${e.path}\nClick to open the analysis report` }, nameOf(e));
  a.addEventListener('click', (ev) => { ev.preventDefault(); void act(channel, { type: 'analyze', path: e.path }, `Analysing ${nameOf(e)}…`); });
  return a;
}

function findingsCell(e: FleetEntryView): HTMLElement | string {
  if (!e.ok) return '–';
  if (!e.findings) return h('span', { class: 'muted' }, '0');
  const codes = Object.entries(e.codes).map(([c, n]) => `${c} ×${n}`).join('\n');
  return h('span', { class: 'sev-counts', title: codes },
    e.errors ? badge(`${e.errors} E`, 'small error') : '', e.warnings ? badge(`${e.warnings} W`, 'small warn') : '', e.infos ? badge(`${e.infos} I`, 'small accent') : '');
}

function makeTable(): SortTable<FleetEntryView> {
  const t = new SortTable<FleetEntryView>('fleet-table', [
    { key: 'name', label: 'adapter', title: 'Adapter (click to analyse)', value: nameOf, text: nameCell, num: false },
    { key: 'format', label: 'format', title: 'Adapter format', value: rec((r) => r.format), num: false },
    { key: 'base', label: 'base', title: 'base_model_name_or_path', value: rec((r) => r.base), num: false },
    { key: 'r', label: 'r', title: 'Rank (config, or the first module)', value: rec((r) => r.r), text: (e) => (e.ok ? (e.ranks.length > 1 ? `${e.r ?? '?'} (${e.ranks.join('/')})` : String(e.r ?? '–')) : '–') },
    { key: 'scale', label: 'scale', title: 'Most common module scale s (rule in the tooltip)', value: rec((r) => r.scale) },
    { key: 'sigma1', label: 'σ₁', title: 'max over modules of σ₁(ΔW)', value: rec((r) => r.sigma1) },
    { key: 'effectiveRank', label: 'eff. rank', title: 'median over modules of the effective rank exp(H(σ/Σσ))', value: rec((r) => r.effectiveRank) },
    { key: 'gap', label: 'gap', title: 'median balance gap ‖BᵀB − AAᵀ‖_F/(‖A‖²+‖B‖²)', value: rec((r) => r.gap) },
    { key: 'findings', label: 'doctor', title: 'Doctor findings: errors / warnings / info (codes in the tooltip)', value: (e) => (e.ok ? e.errors * 1e6 + e.warnings * 1e3 + e.infos : null), text: findingsCell },
    { key: 'modules', label: 'modules', title: 'LoRA modules', value: rec((r) => r.modules) },
    { key: 'bytes', label: 'size', title: 'Weights file size', value: rec((r) => r.bytes), text: (e) => (e.ok ? bytes(e.bytes) : '–') },
    { key: 'error', label: 'error', title: 'Why the file could not be analysed', value: (e) => (e.ok ? '' : e.error), text: (e) => (e.ok ? '' : h('span', { class: 'err', title: e.error }, reason(e))), num: false },
  ], (e) => ({ 'data-path': e.path, 'data-ok': String(e.ok), class: e.ok ? (e.errors ? 'row-findings-error' : undefined) : 'row-error' }));
  t.onRender = (shown, total) => {
    const c = document.getElementById('fleet-count');
    if (c) c.textContent = shown === total ? `${total} adapters` : `${shown} of ${total} adapters`;
  };
  return t;
}

function applyFilter(): void {
  const q = filters.text.toLowerCase();
  table?.setFilter((e) => {
    if (filters.failed && e.ok) return false;
    if (filters.findings && (!e.ok || !e.findings)) return false;
    if (filters.format && (!e.ok || e.format !== filters.format)) return false;
    if (!q) return true;
    return [e.path, e.ok ? `${e.format} ${e.base ?? ''} ${Object.keys(e.codes).join(' ')}` : e.error].some((s) => s.toLowerCase().includes(q));
  });
}

function formatOptions(sel: HTMLSelectElement): void {
  const fmts = [...new Set(view!.entries.filter((e): e is FleetRecordView => e.ok).map((e) => e.format))].sort();
  const cur = sel.value;
  sel.replaceChildren(h('option', { value: '' }, 'all formats'), ...fmts.map((f) => h('option', { value: f, selected: f === cur }, f)));
}

function updateFacts(): void {
  if (!view) return;
  const v = view;
  const failed = v.entries.filter((e) => !e.ok).length;
  const withFindings = v.entries.filter((e) => e.ok && e.errors + e.warnings > 0).length;
  const b = v.entries.reduce((s, e) => s + (e.ok ? e.bytes : 0), 0);
  const set = (id: string, t: string): void => { const d = document.querySelector(`[data-fact="${id}"] dd`); if (d) d.textContent = t; };
  set('done', v.total ? `${v.done} / ${v.total}` : v.running ? 'scanning…' : '0');
  set('failed', String(failed));
  set('findings', String(withFindings));
  set('bytes', bytes(b));
  const bar = document.getElementById('fleet-progress') as HTMLProgressElement | null;
  if (bar) { bar.max = Math.max(1, v.total); bar.value = v.done; bar.hidden = !v.running; }
  const sel = document.getElementById('fleet-format') as HTMLSelectElement | null;
  if (sel) formatOptions(sel);
}

function render(): void {
  if (!view) return;
  const v = view;
  const stop = h('button', { id: 'fleet-stop', class: 'secondary', type: 'button', hidden: !v.running, title: 'Stop the analysis (rows so far stay)' }, 'Stop');
  stop.addEventListener('click', () => void act(channel, { type: 'stop' }, 'Stopping…'));
  const state = v.running ? badge('running', 'accent') : v.summary?.cancelled ? badge('stopped', 'warn') : badge('done', 'ok');
  const facts = [fact('done', 'Analysed', ''), fact('failed', 'Not analysed', ''), fact('findings', 'With errors/warnings', ''), fact('bytes', 'Adapter bytes', ''),
    fact('time', 'Time', v.summary ? (v.summary.ms < 1000 ? `${v.summary.ms.toFixed(0)} ms` : `${(v.summary.ms / 1000).toFixed(1)} s`) : '…')];
  const search = h('input', { type: 'search', id: 'fleet-filter', placeholder: 'Filter: name, path, format, base, finding code…', value: filters.text, 'aria-label': 'Filter adapters' });
  search.addEventListener('input', () => { filters.text = search.value; applyFilter(); });
  const fmtSel = h('select', { id: 'fleet-format', 'aria-label': 'Format' });
  fmtSel.addEventListener('change', () => { filters.format = fmtSel.value; applyFilter(); });
  const chk = (id: string, label: string, key: 'findings' | 'failed'): HTMLElement => {
    const i = h('input', { type: 'checkbox', id, checked: filters[key] });
    i.addEventListener('change', () => { filters[key] = i.checked; applyFilter(); });
    return h('label', { class: 'check', for: id }, i, label);
  };
  if (!table || !built) { table = makeTable(); built = true; }
  const parts = [
    header(channel, { id: 'fleet-header', title: `Fleet: ${v.dir.split(/[\\/]/).pop()}`, badges: [state], path: v.dir, actions: [stop], facts }),
    h('progress', { id: 'fleet-progress', class: 'fleet-progress', max: 1, value: 0 }),
    card('fleet-card', 'Adapters', 'click a column to sort · click a name to open its report',
      h('div', { class: 'toolbar' }, search, fmtSel, chk('fleet-only-findings', 'with findings', 'findings'), chk('fleet-only-failed', 'not analysed', 'failed'), h('span', { class: 'spacer' }), h('span', { class: 'hint', id: 'fleet-count' })),
      table.el),
  ];
  app.replaceChildren(...parts);
  table.setRows(v.entries);
  applyFilter();
  updateFacts();
}

channel.post({ type: 'ready' });
