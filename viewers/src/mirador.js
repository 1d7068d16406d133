// The Mirador 4 page of iiifsrv: Mirador with the annotation editor plugin, wired to iiifsrv's
// annotation store. Configuration comes from the page: <div id="mirador" data-manifest=…
// data-base=… data-panel=… data-editor=on|off>; writing needs a signed-in session (see
// session.js). With data-editor="off" (/viewer/mirador?…&editor=off) it is a plain, read-only
// Mirador: no editor plugin, no adapter, no sign-in; it reads the annotation pages the manifest
// references, as any Mirador elsewhere would.
import Mirador from 'mirador';
import annotationPlugins from 'mirador-annotation-editor';
import 'mirador-annotation-editor/dist/index.css';
import authRefreshPlugins from './auth-refresh-plugin.js';
import IiifsrvAdapter from './iiifsrv-adapter.js';
import machineLayerPlugins from './machine-layer.jsx';
import { fetchSession, setupSignInForm } from './session.js';
import spectrumPlugins from './spectrum-plugin.js';

const root = document.getElementById('mirador');
const { manifest, base, panel } = root.dataset;
const editor = root.dataset.editor !== 'off';

// The manifests reference each canvas's W3C annotation page, and the editor loads the same
// annotations through its adapter: keep one source (the adapter's, which the editor can edit),
// by emptying the pages of this server's own canvas containers.
const escapedBase = base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const ownPages = new RegExp(`^${escapedBase}/annotations/canvas/[^/]+/page$`);
const dropDuplicatePages = (url, action) => {
  if (action && action.annotationJson && ownPages.test(url)) {
    return { ...action, annotationJson: { ...action.annotationJson, items: [] } };
  }
  return action;
};

const windows = manifest
  ? [{ manifestId: manifest, sideBarOpen: Boolean(panel), ...(panel ? { sideBarPanel: panel } : {}) }]
  : [];

const editorConfig = (session) => ({
  annotation: {
    adapter: (canvasId) => new IiifsrvAdapter(canvasId, base, session),
    exportLocalStorageAnnotations: false,
    readonly: !session.user,
  },
  requests: { postprocessors: [dropDuplicatePages] },
});

const config = (session) => ({
  id: 'mirador',
  ...(editor ? editorConfig(session) : {}),
  annotations: {
    htmlSanitizationRuleSet: 'iiif',
    // Mirador 4.0.0 hides `supplementing` by default: machine-read lines (iiifsrv enrich ocr)
    // are supplementing, so they are listed beside the scholars' comments and tags.
    filteredMotivations: ['oa:commenting', 'oa:tagging', 'sc:painting', 'commenting', 'tagging', 'supplementing'],
  },
  window: {
    defaultSideBarPanel: 'annotations',
    panels: { info: true, attribution: true, canvas: true, annotations: true, search: true, layers: true },
  },
  workspace: { type: 'mosaic' },
  workspaceControlPanel: { enabled: !manifest },
  windows,
});

if (editor) {
  fetchSession(base).then((session) => {
    setupSignInForm(base, session);
    window.miradorInstance = Mirador.viewer(config(session), [
      ...machineLayerPlugins, // before the editor's: its CanvasAnnotations wrapper renders the list
      ...annotationPlugins,
      ...spectrumPlugins,
      ...authRefreshPlugins,
    ]);
  });
} else {
  window.miradorInstance = Mirador.viewer(config({ user: null }), [
    ...machineLayerPlugins,
    ...spectrumPlugins,
    ...authRefreshPlugins,
  ]);
}
