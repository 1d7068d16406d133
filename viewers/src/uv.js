// The Universal Viewer page of iiifsrv, as a static module (the page has no inline script, so
// its Content-Security-Policy can forbid inline script and event handlers). Configuration comes
// from <div id="uv" data-manifest=…>; UV.js (UMD, loaded before this module) defines UV.
//
// UV 4.4 builds its share dialogue by concatenating the manifest's homepage/related (when
// "embedded") and id into HTML: the page is not embedded, and the share and embed features are
// off, so manifest strings never reach that dialogue.
const root = document.getElementById('uv');
const { manifest } = root.dataset;

const NO_SHARING = {
  modules: {
    shareDialogue: {
      options: { embedEnabled: false, shareEnabled: false, shareManifestsEnabled: false },
    },
    footerPanel: { options: { embedEnabled: false, shareEnabled: false } },
    mobileFooterPanel: { options: { embedEnabled: false, shareEnabled: false } },
  },
};

const uv = manifest && window.UV.init('uv', { manifest, embedded: false });
if (uv) uv.on('configure', ({ cb }) => cb(NO_SHARING));
window.uv = uv;

// Sign out (shown when access rules are in force): Universal Viewer 4.4 keeps no sign-out
// control once an image shows. The IIIF Auth logout service opens in a window that closes
// itself; then the page starts again, and Universal Viewer asks for its images anew.
const signOut = document.getElementById('sign-out');
if (signOut) {
  signOut.addEventListener('click', () => {
    const win = window.open(signOut.dataset.logout, 'iiifsrv-logout');
    if (!win) return;
    const timer = window.setInterval(() => {
      if (win.closed) {
        window.clearInterval(timer);
        window.location.reload();
      }
    }, 250);
  });
}
