// The points of each window's Spectrum panel: where they are, their colour, whether they are
// pinned, and the values the spectral service returned for them. A small external store shared
// by the panel (chart, table, CSV) and the image overlay (clicks, markers).
import { spectrumUrl } from './service.js';

export const COLOURS = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#17becf',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];
export const MAX_RADIUS = 50;
const EMPTY = Object.freeze({ radius: 0, points: [] });

const windows = new Map();
const listeners = new Set();
let nextId = 1;

function emit() {
  listeners.forEach((listener) => listener());
}

function update(windowId, change) {
  windows.set(windowId, { ...get(windowId), ...change(get(windowId)) });
  emit();
}

function patchPoint(windowId, id, patch) {
  update(windowId, (s) => ({ points: s.points.map((p) => (p.id === id ? { ...p, ...patch } : p)) }));
}

async function load(windowId, point) {
  const url = spectrumUrl(point.service, point.x, point.y, point.radius);
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    const text = await response.text();
    if (!response.ok) throw new Error(`${response.status}: ${text.trim().slice(0, 200)}`);
    const body = JSON.parse(text);
    if (!body || !Array.isArray(body.bands)) throw new Error('not a spectral service response');
    patchPoint(windowId, point.id, { status: 'ready', data: body, error: null, url });
  } catch (error) {
    patchPoint(windowId, point.id, { status: 'error', error: String(error.message || error) });
  }
}

/** The state of a window's panel: { radius, points }. Stable between changes. */
export function get(windowId) {
  return windows.get(windowId) || EMPTY;
}

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** A click on the image: the unpinned point moves there (or a new one is made). `at` holds the
 * pixel (x, y) and the point in OpenSeadragon's world coordinates (wx, wy) for the marker. */
export function place(windowId, service, at) {
  const state = get(windowId);
  const current = state.points.find((p) => !p.pinned);
  const used = new Set(state.points.filter((p) => p.pinned).map((p) => p.colour));
  const colour = current ? current.colour : (COLOURS.find((c) => !used.has(c)) || COLOURS[0]);
  const point = {
    id: nextId++, service, colour, pinned: false, status: 'loading', data: null, error: null,
    radius: state.radius, ...at,
  };
  update(windowId, (s) => ({ points: [...s.points.filter((p) => p.pinned), point] }));
  return load(windowId, point);
}

/** Keep the current point: the next click makes a new one, in another colour. */
export function pin(windowId) {
  update(windowId, (s) => ({ points: s.points.map((p) => ({ ...p, pinned: true })) }));
}

export function remove(windowId, id) {
  update(windowId, (s) => ({ points: s.points.filter((p) => p.id !== id) }));
}

export function clear(windowId) {
  update(windowId, () => ({ points: [] }));
}

/** The radius of the next reading; the current (unpinned) point is read again with it. */
export function setRadius(windowId, radius) {
  const r = Math.max(0, Math.min(MAX_RADIUS, Math.round(Number(radius) || 0)));
  const current = get(windowId).points.find((p) => !p.pinned);
  update(windowId, () => ({ radius: r }));
  if (current && current.radius !== r) {
    const again = { ...current, radius: r, status: 'loading' };
    patchPoint(windowId, current.id, again);
    return load(windowId, again);
  }
  return Promise.resolve();
}

const csvCell = (value) => {
  const text = value == null ? '' : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
};

/** Every value of every point read so far: one row per point and band (points numbered as in
 * the panel). */
export function csv(points) {
  const rows = [['point', 'x', 'y', 'radius', 'band', 'label', 'wavelength_nm', 'mean', 'max']];
  points.forEach((p, i) => {
    if (!p.data) return;
    p.data.bands.forEach((b) => {
      rows.push([i + 1, p.data.x, p.data.y, p.data.radius, b.name, b.label, b.wavelength_nm,
        b.mean, b.max]);
    });
  });
  return `${rows.map((row) => row.map(csvCell).join(',')).join('\r\n')}\r\n`;
}

/** Save the CSV through a Blob URL (no server round trip). */
export function download(points, name) {
  const blob = new Blob([csv(points)], { type: 'text/csv;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
