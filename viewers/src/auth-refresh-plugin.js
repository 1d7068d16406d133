// Mirador 4.0's missing refresh after IIIF Auth 1.0 sign-in, sign-out or agreement.
//
// Mirador keys each OpenSeadragon tile source on the info.json id it *asked for* and never
// re-adds it: after a login it fetches the full info.json again (with the token), but the
// tiles that answered 401 stay blank and a degraded tier (302 to another info.json) stays on
// screen (research: shared/docs/research/anchors-auth.md §3, "No image refresh after login").
//
// This plugin wraps the OpenSeadragon viewer and keys it on the access state of the images
// already shown: when an info response that was displayed changes (its document id, i.e. the
// degraded tier vs the full image, or its degraded flag), the viewer is mounted afresh from the
// current info responses; it keeps the window's viewport (Mirador stores it per window). First
// loads and canvas changes do not remount anything.
import { Fragment, createElement, useRef } from 'react';

const documentId = (json) => (json && (json.id || json['@id'])) || '';

/** What the viewer shows for each info response: its document and whether access is degraded. */
export function accessState(infoResponses = []) {
  const state = {};
  infoResponses.forEach((r) => {
    state[r.id] = `${documentId(r.json)}|${r.degraded ? 'degraded' : 'full'}`;
  });
  return state;
}

/** Whether an image already shown now has another access state (login, logout, agreement). */
export function accessChanged(before, after) {
  return Object.keys(after).some((id) => id in before && before[id] !== after[id]);
}

function AuthRefresh({ children, infoResponses }) {
  const shown = useRef({});
  const generation = useRef(0);
  const now = accessState(infoResponses);
  if (accessChanged(shown.current, now)) generation.current += 1;
  shown.current = { ...shown.current, ...now };
  return createElement(Fragment, { key: `access-${generation.current}` }, children);
}

const authRefreshPlugin = {
  component: AuthRefresh,
  mode: 'wrap',
  name: 'iiifsrvAuthRefresh',
  target: 'OpenSeadragonViewer',
};

export default [authRefreshPlugin];
