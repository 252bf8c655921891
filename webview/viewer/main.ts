/**
 * Checkpoint viewer webview: file summary, adapter card, metadata, and a virtualised, filterable
 * tensor table (fixed row height; only the visible rows exist in the DOM).
 */
import { h, HostChannel } from '../common/vscodeApi';
import type { HostToWebview, TensorRow, ViewerData, WebviewToHost } from '../../src/shared/viewer';
import { fact } from '../common/format';
import { showLogButton } from '../common/banner';

interface State { filter?: string; sortKey?: number; sortDir?: 1 | -1 }

const channel = new HostChannel<WebviewToHost, HostToWebview, State>((m) => {
  switch (m.type) {
    case 'init':
      render(m.data);
      break;
    case 'reply':
      break;
  }
});
const state: State = { ...channel.api.getState() };
const save = (): void => channel.api.setState(state);
const app = document.getElementById('app')!;
const ROW_H = 24;
const nf = new Intl.NumberFormat('en-US');


function errorPanel(d: ViewerData): HTMLElement {
  const status = h('div', { class: 'hint', role: 'status' });
  const btn = h('button', { id: 'reopen-default', type: 'button', class: 'primary' }, 'Reopen with default editor');
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try {
      await channel.request({ type: 'reopenDefault' });
    } catch (e) {
      status.textContent = (e as Error).message;
    } finally {
      btn.disabled = false;
    }
  });
  return h('section', { class: 'card error-panel', id: 'error-panel', role: 'alert' },
    h('h2', {}, h('span', { class: 'error-icon', 'aria-hidden': 'true' }, '!'), 'Cannot read this checkpoint'),
    h('p', { class: 'error-message', id: 'error-message' }, d.error ?? 'Unknown error'),
    h('p', { class: 'hint' }, 'LoRA Lens reads only the file header. The file may be truncated, corrupted, or in an unsupported format.'),
    h('div', { class: 'actions' }, btn), status);
}

function adapterCard(d: ViewerData): HTMLElement | undefined {
  const a = d.adapter;
  if (!a) return undefined;
  const status = h('span', { class: 'hint', role: 'status' });
  const btn = h('button', { id: 'analyze-adapter', type: 'button', class: 'primary' }, 'Analyze adapter');
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    try {
      await channel.request({ type: 'analyze' });
    } catch (e) {
      status.textContent = (e as Error).message;
    } finally {
      btn.disabled = false;
    }
  });
  const flags = a.flags.map((f) => h('span', { class: 'badge' }, f));
  const card = h('section', { class: 'card', id: 'adapter-card' },
    h('div', { class: 'card-head' }, h('h2', {}, `LoRA adapter · ${a.name}`), h('span', { class: 'badge accent' }, a.format), ...flags,
      h('div', { class: 'spacer' }), status, btn),
    h('dl', { class: 'facts' },
      fact('Rank', String(a.rank ?? '–'), 'rank'),
      fact('Alpha', String(a.alpha ?? '–'), 'alpha'),
      fact('Scale rule', a.scaleRule, 'scale'),
      fact('Modules', String(a.moduleCount), 'modules'),
      fact('Targets', a.targetModules.join(', ') || '–', 'targets'),
      fact('Base model', a.baseModel ?? '–', 'base')));
  if (a.warnings.length) {
    card.append(h('div', { class: 'warnings' },
      h('div', { class: 'warnings-title' }, `⚠ ${a.warnings.length} adapter warning${a.warnings.length === 1 ? '' : 's'}`, showLogButton()),
      h('ul', {}, ...a.warnings.map((w) => h('li', {}, w)))));
  }
  return card;
}

function prettyValue(v: string): Node {
  const t = v.trim();
  if ((t.startsWith('{') && t.endsWith('}')) || (t.startsWith('[') && t.endsWith(']'))) {
    try {
      const pretty = JSON.stringify(JSON.parse(t), null, 2);
      const pre = h('pre', { class: 'json' }, pretty);
      if (pretty.split('\n').length > 12) return h('details', {}, h('summary', {}, `JSON (${pretty.split('\n').length} lines)`), pre);
      return pre;
    } catch { /* not JSON */ }
  }
  if (v.length > 400) return h('details', {}, h('summary', {}, `${v.slice(0, 120)}…`), h('pre', { class: 'json' }, v));
  return document.createTextNode(v);
}

function metadataCard(meta: Record<string, string>): HTMLElement {
  const entries = Object.entries(meta).sort(([a], [b]) => a.localeCompare(b));
  const body = entries.length
    ? h('table', { class: 'data kv', id: 'metadata-table' }, h('colgroup', {}, h('col', { class: 'key' }), h('col', { class: 'value' })), h('tbody', {},
      ...entries.map(([k, v]) => h('tr', { 'data-key': k }, h('th', { scope: 'row' }, k), h('td', {}, prettyValue(v))))))
    : h('p', { class: 'hint', id: 'metadata-empty' }, 'No __metadata__ in this file.');
  return h('section', { class: 'card', id: 'metadata-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Metadata'), h('span', { class: 'hint' }, `${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}`)), body);
}

function tensorCard(all: TensorRow[]): HTMLElement {
  const COLS = ['Name', 'DType', 'Shape', 'Params'];
  const count = h('span', { class: 'hint', id: 'tensor-count' });
  const filter = h('input', { type: 'search', id: 'tensor-filter', placeholder: 'Filter tensors (name, dtype or shape)', value: state.filter ?? '', 'aria-label': 'Filter tensors' });
  const head = h('div', { class: 'vt-head', role: 'row' }, ...COLS.map((c, i) => {
    const cell = h('div', { class: `vt-cell${i === 3 ? ' num' : ''}`, role: 'columnheader', 'data-col': i, tabindex: 0, title: 'Click to sort' }, c);
    cell.addEventListener('click', () => {
      state.sortDir = state.sortKey === i ? ((-(state.sortDir ?? 1)) as 1 | -1) : i === 3 ? -1 : 1;
      state.sortKey = i;
      save();
      apply();
    });
    return cell;
  }));
  const sizer = h('div', { class: 'vt-sizer' });
  const scroller = h('div', { class: 'vt-body', id: 'tensor-table', role: 'rowgroup', tabindex: 0 }, sizer);
  let rows: TensorRow[] = all;
  let lastRange = '';
  const draw = (force = false): void => {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 480;
    const first = Math.max(0, Math.floor(top / ROW_H) - 10);
    const last = Math.min(rows.length, Math.ceil((top + height) / ROW_H) + 10);
    const key = `${first}:${last}`;
    if (!force && key === lastRange) return;
    lastRange = key;
    const frag: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const [name, dtype, shape, numel] = rows[i];
      const tip = `${name}\n${dtype} [${shape.join(', ')}] · ${nf.format(numel)} parameters`;
      const row = h('div', { class: `vt-row${i % 2 ? ' odd' : ''}`, role: 'row', 'data-tensor': name, 'data-index': i, title: tip },
        h('div', { class: 'vt-cell name' }, name),
        h('div', { class: 'vt-cell dtype' }, dtype),
        h('div', { class: 'vt-cell shape' }, `[${shape.join(', ')}]`),
        h('div', { class: 'vt-cell num', 'data-value': numel }, nf.format(numel)));
      row.style.transform = `translateY(${i * ROW_H}px)`;
      frag.push(row);
    }
    sizer.replaceChildren(...frag);
  };
  const apply = (): void => {
    const q = (state.filter ?? '').trim().toLowerCase();
    rows = q ? all.filter(([n, d, s]) => n.toLowerCase().includes(q) || d.toLowerCase() === q || `[${s.join(', ')}]`.includes(q)) : all;
    if (state.sortKey !== undefined) {
      const k = state.sortKey;
      const dir = state.sortDir ?? 1;
      rows = [...rows].sort((a, b) => {
        if (k === 3) return (a[3] - b[3]) * dir;
        if (k === 2) return (a[2].reduce((x, y) => x * y, 1) - b[2].reduce((x, y) => x * y, 1) || a[2].length - b[2].length) * dir;
        return String(a[k]).localeCompare(String(b[k]), 'en', { numeric: true }) * dir;
      });
    }
    head.querySelectorAll('[role=columnheader]').forEach((c, i) => c.setAttribute('aria-sort', i === state.sortKey ? (state.sortDir === -1 ? 'descending' : 'ascending') : 'none'));
    sizer.style.height = `${rows.length * ROW_H}px`;
    count.textContent = rows.length === all.length ? `${nf.format(all.length)} tensors` : `${nf.format(rows.length)} of ${nf.format(all.length)} tensors`;
    scroller.scrollTop = 0;
    draw(true);
  };
  let raf = 0;
  scroller.addEventListener('scroll', () => {
    if (!raf) raf = requestAnimationFrame(() => { raf = 0; draw(); });
  });
  new ResizeObserver(() => draw(true)).observe(scroller);
  let t: number | undefined;
  filter.addEventListener('input', () => {
    if (t !== undefined) clearTimeout(t);
    t = window.setTimeout(() => {
      state.filter = filter.value;
      save();
      apply();
    }, all.length > 20000 ? 150 : 0);
  });
  requestAnimationFrame(() => apply());
  return h('section', { class: 'card tensor-card', id: 'tensor-card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Tensors'), count, h('div', { class: 'spacer' }), filter),
    h('div', { class: 'vt', role: 'table', 'aria-label': 'Tensors' }, head, scroller));
}

function render(d: ViewerData): void {
  document.title = d.fileName;
  if (d.error) {
    app.replaceChildren(h('header', { class: 'card header-card' }, h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', {}, d.fileName))),
      h('div', { class: 'path' }, d.path)), errorPanel(d));
    app.setAttribute('data-ready', 'error');
    return;
  }
  const dtypes = h('div', { class: 'dtypes', id: 'dtype-list' }, ...(d.dtypes ?? []).map((x) =>
    h('span', { class: 'badge', 'data-dtype': x.dtype, title: `${nf.format(x.parameters)} parameters` }, `${x.dtype} · ${x.text}`)));
  const header = h('header', { class: 'card header-card', id: 'file-summary' },
    h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', {}, d.fileName), h('span', { class: 'badge accent' }, (d.kind ?? '').toUpperCase()))),
    h('div', { class: 'path', title: d.path }, d.path),
    h('dl', { class: 'facts' },
      fact('Size', d.sizeText ?? '–', 'size'),
      fact('Parameters', `${d.parametersText ?? '–'} (${nf.format(d.parameters ?? 0)})`, 'parameters'),
      fact('Tensors', nf.format(d.tensorCount ?? 0), 'tensors'),
      fact('DTypes', dtypes, 'dtypes')));
  const warnings = d.warnings?.length
    ? h('section', { class: 'card warnings', id: 'warnings' }, h('div', { class: 'warnings-title' }, `⚠ ${d.warnings.length} warning${d.warnings.length === 1 ? '' : 's'}`, showLogButton()),
      h('ul', {}, ...d.warnings.map((w) => h('li', {}, w))))
    : undefined;
  const parts = [header, warnings, adapterCard(d), metadataCard(d.metadata ?? {}), tensorCard(d.tensors ?? [])].filter((x): x is HTMLElement => !!x);
  app.replaceChildren(...parts);
  app.setAttribute('data-ready', 'true');
}

channel.post({ type: 'ready' });
