// The machine layer for Mirador 4: annotations made by software agents (W3C creator of type
// "Software", e.g. the lines `iiifsrv enrich ocr` reads) are marked with a chip
// "machine: <agent> (<engine>)", and one switch at the top of the Annotations panel hides or
// shows them all at once, per window: hidden, they are neither listed, counted nor drawn.
// Scholars' annotations are never touched. Works in both Mirador pages (with the editor, whose
// adapter passes the creator as `provenance`, and read-only, which reads the W3C pages).
//
// Mirador's wrap plugins each receive the original props, so to compose with the annotation
// editor (which also wraps CanvasAnnotations and renders its TargetComponent itself) these
// wrappers pass their changes down to the element they are given: register them BEFORE the
// editor's plugins (see mirador.js).
import { Children, cloneElement, useMemo } from 'react';
import PropTypes from 'prop-types';
import FormControlLabel from '@mui/material/FormControlLabel';
import Switch from '@mui/material/Switch';
import {
  AnnotationFactory,
  getAnnotationResourcesByMotivation,
  getAnnotationResourcesByMotivationForCanvas,
  miradorSlice,
} from 'mirador';

const asList = (value) => (value === undefined || value === null ? [] : [].concat(value));

/** The software agent that made an annotation (W3C `creator`, the Annotot view's
 * `provenance.creator`, or OA `annotatedBy`), or undefined for a person's annotation. */
function softwareCreator(item) {
  if (!item || typeof item !== 'object') return undefined;
  const agents = [...asList(item.creator), ...asList(item.provenance && item.provenance.creator),
    ...asList(item.annotatedBy)];
  return agents.find((agent) => agent && typeof agent === 'object'
    && [...asList(agent.type), ...asList(agent['@type'])]
      .some((type) => type === 'Software' || type === 'prov:SoftwareAgent'));
}

/** "machine: <agent> (<engine>)" for a software agent's annotation, null for a person's. */
export function machineLabel(item) {
  const agent = softwareCreator(item);
  if (!agent) return null;
  const [generator] = [...asList(item.generator), ...asList(item.provenance && item.provenance.generator),
    ...asList(item.serializedBy)];
  const engine = generator && typeof generator === 'object' ? generator.name : undefined;
  const name = agent.name || agent.nickname || agent.id || agent['@id'] || 'software';
  return `machine: ${name}${engine ? ` (${engine})` : ''}`;
}

// ---- state: { [windowId]: { hidden } } --------------------------------------------------------

const SET_MACHINE_LAYER = 'iiifsrv/SET_MACHINE_LAYER';
const SLICE = 'iiifsrvMachineLayer';

export const setMachineLayer = (windowId, visible) => ({ type: SET_MACHINE_LAYER, visible, windowId });

function machineLayerReducer(state = {}, action) {
  if (action.type !== SET_MACHINE_LAYER) return state;
  return { ...state, [action.windowId]: { hidden: !action.visible } };
}

const isHidden = (state, windowId) => {
  const layer = miradorSlice(state)[SLICE] || {};
  return Boolean(layer[windowId] && layer[windowId].hidden);
};

/** How many of the window's listed annotations (on its visible canvases) software made. */
const machineCount = (state, windowId) => getAnnotationResourcesByMotivation(state, { windowId })
  .filter((resource) => machineLabel(resource.resource)).length;

/** Hand `changes` to the wrapped element: the next wrap plugin's targetProps, or the target. */
function passDown(children, changes) {
  const element = Children.only(children);
  const { targetProps } = element.props;
  return cloneElement(element, targetProps ? { ...changes, targetProps: { ...targetProps, ...changes } } : changes);
}

// ---- the Annotations panel: the switch, the chips, the list -----------------------------------

export function MachineLayerSwitch({ count, hidden, onChange }) {
  return (
    <FormControlLabel
      className="iiifsrv-machine-layer"
      sx={{ marginLeft: 0, paddingLeft: 1, paddingTop: 1 }}
      control={<Switch size="small" checked={!hidden} onChange={(event) => onChange(event.target.checked)} />}
      label={`Machine annotations (${count})`}
    />
  );
}

MachineLayerSwitch.propTypes = {
  count: PropTypes.number.isRequired,
  hidden: PropTypes.bool.isRequired,
  onChange: PropTypes.func.isRequired,
};

function MachineAwareAnnotations({
  children, hidden = false, index = 0, machineKey = '[]', setVisible, targetProps, total = 0,
}) {
  const labels = useMemo(() => new Map(JSON.parse(machineKey)), [machineKey]);
  const listed = targetProps.annotations;
  const annotations = useMemo(() => (listed || [])
    .filter((annotation) => !(hidden && labels.has(annotation.id)))
    .map((annotation) => {
      const label = labels.get(annotation.id);
      const tags = annotation.tags || [];
      return label && !tags.includes(label) ? { ...annotation, tags: [...tags, label] } : annotation;
    }), [hidden, labels, listed]);
  return (
    <>
      {index === 0 && total > 0 && <MachineLayerSwitch count={total} hidden={hidden} onChange={setVisible} />}
      {passDown(children, { annotations })}
    </>
  );
}

MachineAwareAnnotations.propTypes = {
  children: PropTypes.node.isRequired,
  hidden: PropTypes.bool,
  index: PropTypes.number,
  machineKey: PropTypes.string,
  setVisible: PropTypes.func.isRequired,
  targetProps: PropTypes.object.isRequired, // eslint-disable-line react/forbid-prop-types
  total: PropTypes.number,
};

const listPlugin = {
  component: MachineAwareAnnotations,
  mapDispatchToProps: (dispatch, { windowId }) => ({
    setVisible: (visible) => dispatch(setMachineLayer(windowId, visible)),
  }),
  mapStateToProps: (state, { canvasId, windowId }) => ({
    hidden: isHidden(state, windowId),
    // [[annotation id, chip]] for this canvas, as a string: unchanged while nothing changed
    machineKey: JSON.stringify(getAnnotationResourcesByMotivationForCanvas(state, { canvasId, windowId })
      .map((resource) => [resource.id, machineLabel(resource.resource)])
      .filter(([, label]) => label)),
    total: machineCount(state, windowId),
  }),
  mode: 'wrap',
  name: 'iiifsrv-machine-layer-list',
  reducers: { [SLICE]: machineLayerReducer },
  target: 'CanvasAnnotations',
};

/** The panel's "Showing N annotations" counts what is listed. */
function MachineAwareCount({ children, hiddenCount = 0, targetProps }) {
  return passDown(children, { annotationCount: Math.max(0, targetProps.annotationCount - hiddenCount) });
}

const countPlugin = {
  component: MachineAwareCount,
  mapStateToProps: (state, { windowId }) => ({
    hiddenCount: isHidden(state, windowId) ? machineCount(state, windowId) : 0,
  }),
  mode: 'wrap',
  name: 'iiifsrv-machine-layer-count',
  target: 'WindowSideBarAnnotationsPanel',
};

// ---- the image: hidden machine annotations are not drawn ---------------------------------------

/** The annotation pages/lists without their software agents' annotations (empty ones dropped). */
export function withoutMachine(pages) {
  return pages.map((page) => {
    const kept = page.resources.filter((resource) => !machineLabel(resource.resource));
    if (kept.length === page.resources.length) return page;
    const key = page.json && page.json.items !== undefined ? 'items' : 'resources';
    return AnnotationFactory.determineAnnotation(
      { ...page.json, [key]: kept.map((resource) => resource.resource) },
      page.target,
    );
  }).filter((page) => page && page.present());
}

function MachineAwareOverlay({ children, hidden = false, targetProps }) {
  const drawn = targetProps.annotations;
  const annotations = useMemo(() => (hidden && drawn ? withoutMachine(drawn) : drawn), [hidden, drawn]);
  return passDown(children, { annotations });
}

const overlayPlugin = {
  component: MachineAwareOverlay,
  mapStateToProps: (state, { windowId }) => ({ hidden: isHidden(state, windowId) }),
  mode: 'wrap',
  name: 'iiifsrv-machine-layer-overlay',
  target: 'AnnotationsOverlay',
};

const machineLayerPlugins = [listPlugin, countPlugin, overlayPlugin];

export default machineLayerPlugins;
