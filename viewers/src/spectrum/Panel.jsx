// The Spectrum companion window: the radius, the points (pin, remove), their spectra on one chart,
// the values in a table, and the CSV download.
import { useSyncExternalStore } from 'react';
import PropTypes from 'prop-types';
import { ConnectedCompanionWindow as CompanionWindow } from 'mirador';
import * as points from './store.js';
import { Chart } from './Chart.jsx';
import { PANEL, spectralServicesKey } from './selectors.js';

const styles = {
  body: { padding: '8px 12px', fontSize: 13, lineHeight: 1.4 },
  row: { display: 'flex', gap: 8, alignItems: 'center', flexWrap: 'wrap', margin: '6px 0' },
  swatch: (colour) => ({
    display: 'inline-block', width: 12, height: 12, borderRadius: 6, background: colour,
    border: '1px solid #000', verticalAlign: 'middle', marginRight: 4,
  }),
  table: { borderCollapse: 'collapse', width: '100%', fontSize: 12, marginTop: 8 },
  cell: { borderBottom: '1px solid #ddd', padding: '2px 4px', textAlign: 'right', whiteSpace: 'nowrap' },
  label: { borderBottom: '1px solid #ddd', padding: '2px 4px', textAlign: 'left', whiteSpace: 'nowrap' },
};

function useWindowPoints(windowId) {
  return useSyncExternalStore(points.subscribe, () => points.get(windowId));
}

export function SpectrumPanel({ id, windowId, servicesKey }) {
  const state = useWindowPoints(windowId);
  const services = JSON.parse(servicesKey || '[]');
  const withData = state.points.filter((p) => p.data);
  const bands = withData.length ? withData[0].data.bands : [];
  const current = state.points.find((p) => !p.pinned);
  const objectName = withData.length ? withData[0].data.object : 'spectrum';

  return (
    <CompanionWindow title="Spectrum" id={id} windowId={windowId}>
      <div className="spectrum-panel" style={styles.body}
        data-service={services.map((s) => s.url).join(' ')}>
        {services.length === 0 ? (
          <p className="spectrum-none">
            No spectral service on this canvas: the canvas (or the info.json of its images)
            declares none.
          </p>
        ) : (
          <p>Click the image to read every band there; pin a point to compare it with the next.</p>
        )}
        <div style={styles.row}>
          <label>
            Radius (px){' '}
            <input name="radius" type="number" min="0" max={points.MAX_RADIUS} step="1"
              style={{ width: '4em' }} value={state.radius}
              onChange={(e) => points.setRadius(windowId, e.target.value)} />
          </label>
          <button type="button" disabled={!current || !current.data}
            onClick={() => points.pin(windowId)}>Pin point</button>
          <button type="button" disabled={!withData.length}
            onClick={() => points.download(state.points, `${objectName}-spectra.csv`)}>
            Download CSV
          </button>
          <button type="button" disabled={!state.points.length}
            onClick={() => points.clear(windowId)}>Clear</button>
        </div>
        <ol className="spectrum-points" style={{ paddingLeft: 20, margin: '6px 0' }}>
          {state.points.map((p) => (
            <li key={p.id} data-point={p.id} data-x={p.x} data-y={p.y} data-radius={p.radius}
              data-pinned={String(p.pinned)} data-status={p.status} data-colour={p.colour}>
              <span style={styles.swatch(p.colour)} />
              ({p.x}, {p.y}) ±{p.radius} px {p.pinned ? '· pinned' : ''}
              {p.status === 'loading' ? ' · reading…' : ''}
              {p.error ? <span role="alert" style={{ color: '#b00' }}> · {p.error}</span> : null}
              {' '}
              <button type="button" aria-label={`Remove point ${p.x}, ${p.y}`}
                onClick={() => points.remove(windowId, p.id)}>×</button>
            </li>
          ))}
        </ol>
        <Chart points={state.points} />
        {bands.length > 0 && (
          <div style={{ overflowX: 'auto' }}>
          <table className="spectrum-table" style={styles.table}>
            <thead>
              <tr>
                <th style={styles.label}>band</th>
                <th style={styles.cell}>nm</th>
                {withData.map((p) => (
                  <th key={p.id} style={styles.cell} data-point={p.id}
                    title={`(${p.data.x}, ${p.data.y}) ±${p.data.radius} px`}>
                    <span style={styles.swatch(p.colour)} />
                    {state.points.indexOf(p) + 1}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {bands.map((b, i) => (
                <tr key={b.name} data-band={b.name}>
                  <td style={styles.label} title={b.label}>{b.name}</td>
                  <td style={styles.cell}>{b.wavelength_nm ?? ''}</td>
                  {withData.map((p) => {
                    const v = p.data.bands[i];
                    return (
                      <td key={p.id} style={styles.cell} data-point={p.id} data-band={v.name}
                        data-value={v.mean}>{v.mean.toFixed(1)}</td>
                    );
                  })}
                </tr>
              ))}
            </tbody>
          </table>
          </div>
        )}
      </div>
    </CompanionWindow>
  );
}

SpectrumPanel.propTypes = {
  id: PropTypes.string.isRequired,
  servicesKey: PropTypes.string,
  windowId: PropTypes.string.isRequired,
};

export const panelPlugin = {
  companionWindowKey: PANEL,
  component: SpectrumPanel,
  mapStateToProps: (state, { windowId }) => ({
    servicesKey: spectralServicesKey(state, windowId),
  }),
  name: 'iiifsrv-spectrum-panel',
};
