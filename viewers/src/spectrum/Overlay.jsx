// On the image (OpenSeadragon): while the Spectrum panel is open, a click reads the spectrum at
// that pixel (full-resolution coordinates), and every point is marked in its colour.
import { useEffect, useSyncExternalStore } from 'react';
import PropTypes from 'prop-types';
import OpenSeadragon from 'openseadragon';
import * as points from './store.js';
import { pixelAt } from './service.js';
import { panelIds, spectralServicesKey } from './selectors.js';

function marker(point) {
  const el = document.createElement('div');
  el.className = 'spectrum-marker';
  el.dataset.point = String(point.id);
  el.dataset.colour = point.colour;
  el.title = `(${point.x}, ${point.y})`;
  Object.assign(el.style, {
    width: '14px', height: '14px', borderRadius: '50%', boxSizing: 'border-box',
    border: `3px solid ${point.colour}`, boxShadow: '0 0 0 1px #fff, 0 0 0 2px #000',
    background: point.pinned ? `${point.colour}55` : 'transparent', pointerEvents: 'none',
  });
  return el;
}

export function SpectrumOverlay({ windowId, viewer = null, canvasWorld = null, open = false,
  servicesKey = '[]' }) {
  const state = useSyncExternalStore(points.subscribe, () => points.get(windowId));

  useEffect(() => {
    if (!viewer || !open || !canvasWorld) return undefined;
    const services = JSON.parse(servicesKey);
    const onClick = (event) => {
      if (!event.quick) return; // a drag, not a click
      const world = viewer.viewport.pointFromPixel(event.position);
      for (const service of services) {
        const [cx, cy, cw, ch] = canvasWorld.canvasToWorldCoordinates(service.canvasId);
        const pixel = pixelAt((world.x - cx) / cw, (world.y - cy) / ch, service.width,
          service.height);
        if (pixel) {
          event.preventDefaultAction = true;
          const wx = cx + ((pixel.x + 0.5) / service.width) * cw;
          const wy = cy + ((pixel.y + 0.5) / service.height) * ch;
          points.place(windowId, service.url, { ...pixel, wx, wy, canvasId: service.canvasId });
          return;
        }
      }
    };
    viewer.addHandler('canvas-click', onClick);
    return () => viewer.removeHandler('canvas-click', onClick);
  }, [viewer, open, canvasWorld, servicesKey, windowId]);

  useEffect(() => {
    if (!viewer || !open) return undefined;
    const shown = new Set(JSON.parse(servicesKey).map((s) => s.canvasId));
    const elements = state.points.filter((p) => shown.has(p.canvasId)).map((p) => {
      const el = marker(p);
      viewer.addOverlay({
        element: el,
        location: new OpenSeadragon.Point(p.wx, p.wy),
        placement: OpenSeadragon.Placement.CENTER,
        checkResize: false,
      });
      return el;
    });
    return () => elements.forEach((el) => viewer.removeOverlay(el));
  }, [viewer, open, state.points, servicesKey]);

  return null;
}

SpectrumOverlay.propTypes = {
  canvasWorld: PropTypes.object, // eslint-disable-line react/forbid-prop-types
  open: PropTypes.bool,
  servicesKey: PropTypes.string,
  viewer: PropTypes.object, // eslint-disable-line react/forbid-prop-types
  windowId: PropTypes.string.isRequired,
};

export const overlayPlugin = {
  component: SpectrumOverlay,
  mapStateToProps: (state, { windowId }) => ({
    open: panelIds(state, windowId).length > 0,
    servicesKey: spectralServicesKey(state, windowId),
  }),
  mode: 'add',
  name: 'iiifsrv-spectrum-overlay',
  target: 'OpenSeadragonViewer',
};
