// The compare page (/viewer/compare?manifest=A&manifest=B…): Mirador with one window per
// manifest in a mosaic, each with its Layers panel open, and the zoom and centre of the windows
// kept in step while the page's "Sync" checkbox is ticked. Configuration comes from the page:
// <div id="mirador" data-manifests='["…", "…"]'> and <input id="sync" type="checkbox">.
import Mirador from 'mirador';
import spectrumPlugins from './spectrum-plugin.js';
import { syncViewports } from './viewport-sync.js';

const root = document.getElementById('mirador');
const manifests = JSON.parse(root.dataset.manifests || '[]');
const sync = document.getElementById('sync');

const windows = manifests.map((manifestId, i) => ({
  id: `compare-${i + 1}`,
  manifestId,
  sideBarOpen: true,
  sideBarPanel: 'layers',
}));

const config = {
  id: 'mirador',
  // Up to 4 screen pixels per image pixel (OpenSeadragon's default stops at 1.1), so that small
  // captures can be compared pixel by pixel.
  osdConfig: { maxZoomPixelRatio: 4 },
  window: {
    allowClose: false,
    defaultSideBarPanel: 'layers',
    panels: { info: true, attribution: true, canvas: true, annotations: true, search: true, layers: true },
  },
  workspace: { type: 'mosaic' },
  workspaceControlPanel: { enabled: false },
  windows,
};

window.miradorInstance = Mirador.viewer(config, [...spectrumPlugins]);
syncViewports(
  window.miradorInstance.store,
  windows.map((w) => w.id),
  () => !sync || sync.checked,
);
