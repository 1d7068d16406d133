// The window top bar's "Spectrum" button: shown when a visible canvas has a spectral service;
// opens (or closes) the Spectrum panel on the right of the window.
import PropTypes from 'prop-types';
import SvgIcon from '@mui/material/SvgIcon';
import { MiradorMenuButton, addCompanionWindow, removeCompanionWindow } from 'mirador';
import { PANEL, panelIds, spectralServicesKey } from './selectors.js';

function SpectrumIcon() {
  return (
    <SvgIcon>
      <path d="M3 20h18v1.5H3zM3 3h1.5v17H3zm2.5 13.5 4-6 3.5 3 4.5-8 2.5 1.4-5.5 9.8-3.5-3-3.2 4.6z" />
    </SvgIcon>
  );
}

export function SpectrumButton({ available = false, open = false, openPanel, closePanels }) {
  if (!available) return null;
  return (
    <MiradorMenuButton aria-label={open ? 'Close the Spectrum panel' : 'Spectrum'}
      aria-pressed={open} selected={open} className="spectrum-button"
      onClick={open ? closePanels : openPanel}>
      <SpectrumIcon />
    </MiradorMenuButton>
  );
}

SpectrumButton.propTypes = {
  available: PropTypes.bool,
  closePanels: PropTypes.func.isRequired,
  open: PropTypes.bool,
  openPanel: PropTypes.func.isRequired,
};

export const buttonPlugin = {
  component: SpectrumButton,
  mapDispatchToProps: (dispatch, { windowId }) => ({
    closePanels: () => dispatch((d, getState) => {
      panelIds(getState(), windowId).forEach((id) => d(removeCompanionWindow(windowId, id)));
    }),
    openPanel: () => dispatch(addCompanionWindow(windowId, { content: PANEL, position: 'right' })),
  }),
  mapStateToProps: (state, { windowId }) => ({
    available: spectralServicesKey(state, windowId) !== '[]',
    open: panelIds(state, windowId).length > 0,
  }),
  mode: 'add',
  name: 'iiifsrv-spectrum-button',
  target: 'WindowTopBarPluginArea',
};
