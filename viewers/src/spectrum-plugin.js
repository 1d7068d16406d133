// The Spectrum plugin for Mirador 4: on a canvas whose manifest (or whose images' info.json)
// declares iiifsrv's spectral service, a top-bar button opens a panel; clicks on the image read
// every band's value there, points can be pinned and compared, and the values saved as CSV.
// See docs/viewers.md ("Spectrum").
import { buttonPlugin } from './spectrum/Button.jsx';
import { overlayPlugin } from './spectrum/Overlay.jsx';
import { panelPlugin } from './spectrum/Panel.jsx';

export { SPECTRA_PROFILE } from './spectrum/service.js';

const spectrumPlugins = [buttonPlugin, panelPlugin, overlayPlugin];

export default spectrumPlugins;
