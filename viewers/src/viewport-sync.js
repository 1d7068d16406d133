// Keeps the zoom and centre of several Mirador windows in step: when one window's viewport
// changes (Mirador's UPDATE_VIEWPORT, seen through the store), the others get the same view,
// scaled to their own canvas (the same fraction of the canvas's width is shown, centred on the
// same relative point), by dispatching updateViewport. What this module dispatched is remembered
// per window, so the echo (the reducer's change, then OpenSeadragon reporting the position it
// animated to) is recognised and not sent back: no feedback loop.
import { getCurrentCanvas, getViewer, updateViewport } from 'mirador';

const near = (a, b, tolerance) => Math.abs(a - b) <= tolerance;

/** A window's canvas size and, once OpenSeadragon has reported it, its centre and zoom. */
function view(state, windowId) {
  const canvas = getCurrentCanvas(state, { windowId });
  if (!canvas) return null;
  const viewer = getViewer(state, { windowId }) || {};
  const known = [viewer.x, viewer.y, viewer.zoom].every(Number.isFinite);
  return {
    height: canvas.getHeight() || 1,
    known,
    width: canvas.getWidth() || 1,
    x: known ? viewer.x : null,
    y: known ? viewer.y : null,
    zoom: known ? viewer.zoom : null,
  };
}

function same(a, b) {
  if (!a || !b || !a.known || !b.known) return false;
  const unit = Math.max(1, a.width / 1000);
  return near(a.x, b.x, unit) && near(a.y, b.y, unit)
    && near(a.zoom, b.zoom, Math.abs(a.zoom) * 1e-3);
}

/** The view of `target` matching `source`'s: same relative centre, same share of the width. */
export function matchView(source, target) {
  return {
    x: (source.x / source.width) * target.width,
    y: (source.y / source.height) * target.height,
    zoom: (source.zoom * source.width) / target.width,
  };
}

/** Starts syncing `windowIds` in `store`; `isEnabled()` is asked on every change. Returns a
 * function that stops it. */
export function syncViewports(store, windowIds, isEnabled = () => true) {
  const seen = new Map();
  const pushed = new Map();
  let dispatching = false;

  const onChange = () => {
    if (dispatching) return;
    const state = store.getState();
    const views = new Map(windowIds.map((id) => [id, view(state, id)]));
    const changed = windowIds.filter((id) => {
      const now = views.get(id);
      if (!now || !now.known || same(now, seen.get(id))) return false;
      seen.set(id, now);
      if (same(now, pushed.get(id))) return false; // our own change, coming back
      pushed.delete(id);
      return true;
    });
    if (!changed.length || !isEnabled()) return;
    const source = views.get(changed[0]);
    dispatching = true;
    try {
      windowIds.filter((id) => id !== changed[0]).forEach((id) => {
        const target = views.get(id);
        if (!target) return;
        const next = { ...target, ...matchView(source, target), known: true };
        if (same(next, target)) return;
        pushed.set(id, next);
        seen.set(id, next);
        store.dispatch(updateViewport(id, { x: next.x, y: next.y, zoom: next.zoom }));
      });
    } finally {
      dispatching = false;
    }
  };
  return store.subscribe(onChange);
}
