// The spectra of the panel's points on one plain SVG chart: mean value against wavelength (or
// band order when a wavelength is missing), one line and colour per point.
import PropTypes from 'prop-types';

const W = 320;
const H = 220;
const M = { left: 40, right: 10, top: 12, bottom: 40 };

const short = (n) => (Math.abs(n) >= 1000 ? n.toFixed(0) : String(Math.round(n * 10) / 10));

export function Chart({ points }) {
  const series = points.filter((p) => p.data && p.data.bands.length);
  if (!series.length) return null;
  const bands = series[0].data.bands;
  const byNm = bands.every((b) => typeof b.wavelength_nm === 'number');
  const xs = bands.map((b, i) => (byNm ? b.wavelength_nm : i));
  let lo = Math.min(...xs);
  let hi = Math.max(...xs);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  const top = Math.max(...series.flatMap((p) => p.data.bands.map((b) => b.max || 0)), 1);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const px = (v) => M.left + ((v - lo) / (hi - lo)) * pw;
  const py = (v) => M.top + ph - (v / top) * ph;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * top);
  return (
    <svg className="spectrum-chart" viewBox={`0 0 ${W} ${H}`} width="100%" role="img"
      aria-label="Spectra of the points" data-series={series.length}
      style={{ fontFamily: 'sans-serif', fontSize: 9, background: '#fff' }}>
      {ticks.map((t) => (
        <g key={t}>
          <line x1={M.left} x2={W - M.right} y1={py(t)} y2={py(t)} stroke="#e4e4e4" />
          <text x={M.left - 4} y={py(t) + 3} textAnchor="end">{short(t)}</text>
        </g>
      ))}
      <line x1={M.left} x2={M.left} y1={M.top} y2={M.top + ph} stroke="#000" />
      <line x1={M.left} x2={W - M.right} y1={M.top + ph} y2={M.top + ph} stroke="#000" />
      {bands.map((b, i) => (
        <text key={b.name} x={px(xs[i])} y={M.top + ph + 11} textAnchor="middle">
          {byNm ? b.wavelength_nm : b.name}
        </text>
      ))}
      <text x={M.left + pw / 2} y={H - 6} textAnchor="middle">
        {byNm ? 'wavelength (nm)' : 'band'}
      </text>
      {series.map((p) => (
        <g key={p.id} className="spectrum-series" data-point={p.id} data-colour={p.colour}>
          <polyline fill="none" stroke={p.colour} strokeWidth="1.5"
            points={p.data.bands.map((b, i) => `${px(xs[i]).toFixed(1)},${py(b.mean).toFixed(1)}`).join(' ')} />
          {p.data.bands.map((b, i) => (
            <circle key={b.name} cx={px(xs[i])} cy={py(b.mean)} r="2.5" fill={p.colour}
              data-band={b.name} data-value={b.mean}>
              <title>{`${b.label}: ${b.mean}`}</title>
            </circle>
          ))}
        </g>
      ))}
    </svg>
  );
}

Chart.propTypes = {
  points: PropTypes.arrayOf(PropTypes.object).isRequired, // eslint-disable-line react/forbid-prop-types
};
