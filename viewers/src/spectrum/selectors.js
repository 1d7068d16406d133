// What the plugin reads from Mirador's store: the spectral service of each visible canvas, and
// whether a window's Spectrum panel is open.
import { getCompanionWindowsForContent, getVisibleCanvases, selectInfoResponses } from 'mirador';
import { spectralService } from './service.js';

export const PANEL = 'spectrum';

/** [{ canvasId, url, width, height }] for the window's visible canvases that have a spectral
 * service, as a JSON string (so that react-redux sees no change while nothing changed). */
export function spectralServicesKey(state, windowId) {
  const infos = selectInfoResponses(state) || {};
  const found = [];
  getVisibleCanvases(state, { windowId }).forEach((canvas) => {
    const service = spectralService(canvas.__jsonld, infos); // eslint-disable-line no-underscore-dangle
    if (service) found.push({ canvasId: canvas.id, ...service });
  });
  return JSON.stringify(found);
}

export function panelIds(state, windowId) {
  return getCompanionWindowsForContent(state, { content: PANEL, windowId }).map((cw) => cw.id);
}
