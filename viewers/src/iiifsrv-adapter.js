// A storage adapter for mirador-annotation-editor that talks to iiifsrv's annotation store
// through its Annotot dialect (see docs/annotations.md). The editor calls, per canvas:
// all(), get(id), create(annotation), update(annotation), delete(id); the last three return
// the canvas's whole AnnotationPage after the write, like the editor's LocalStorageAdapter.
//
// Reads use the public endpoint (<base>/annotot/pages?uri=<canvas>); writes go to <base>/annotot
// with the HttpOnly session cookie of the page's sign-in (credentials: 'same-origin') and the
// session's CSRF value in X-CSRF-Token. The token itself never reaches page script or a URL.

/**
 * What the editor produces, made a valid W3C annotation for the store: it leaves out
 * "type": "Annotation", and writes a FragmentSelector "<canvas>#" (empty unless the media is
 * temporal) beside its SvgSelector; the fragment is kept without the canvas, or dropped if empty.
 */
export function normalise(annotation, canvasId) {
  const out = { type: 'Annotation', motivation: 'commenting', ...annotation };
  if (Array.isArray(out.body)) out.body = out.body.filter((b) => !(b && b.iiifsrvMachine));
  const target = out.target;
  if (target && typeof target === 'object' && !Array.isArray(target)) {
    const fixed = { source: canvasId, ...target };
    if (Array.isArray(target.selector)) {
      fixed.selector = target.selector
        .map((sel) => {
          if (!sel || sel.type !== 'FragmentSelector' || typeof sel.value !== 'string') return sel;
          const fragment = sel.value.includes('#') ? sel.value.slice(sel.value.indexOf('#') + 1) : sel.value;
          return fragment ? { ...sel, value: fragment } : null;
        })
        .filter(Boolean);
      if (fixed.selector.length === 1) [fixed.selector] = fixed.selector;
      if (fixed.selector.length === 0) delete fixed.selector;
    }
    out.target = fixed;
  }
  return out;
}

/**
 * A software agent's annotation (provenance.creator.type "Software", e.g. an OCR line) as
 * Mirador lists it: with a chip "machine: <agent> (<engine>)", so that it reads apart from the
 * scholars' annotations. Display only: the chip is never written back.
 */
export function marked(annotation) {
  const provenance = annotation && annotation.provenance;
  if (!provenance || !provenance.creator || provenance.creator.type !== 'Software') return annotation;
  const engine = provenance.generator && provenance.generator.name;
  const chip = {
    type: 'TextualBody',
    purpose: 'tagging',
    value: `machine: ${provenance.creator.name}${engine ? ` (${engine})` : ''}`,
    iiifsrvMachine: true,
  };
  const bodies = Array.isArray(annotation.body) ? annotation.body : [annotation.body].filter(Boolean);
  return { ...annotation, body: [...bodies, chip] };
}

export default class IiifsrvAdapter {
  /**
   * @param {string} canvasId the canvas this adapter stores annotations for
   * @param {string} base the server's base URL, e.g. "https://iiif.example.org"
   * @param {{user: string|null, csrf?: string}} session GET /session (user null: read-only)
   */
  constructor(canvasId, base, session) {
    this.canvasId = canvasId;
    this.base = base.replace(/\/+$/, '');
    this.session = session && session.user ? session : null;
    this.user = this.session ? this.session.user : 'anonymous';
    this.annotationPageId = `${this.base}/annotot/pages?uri=${encodeURIComponent(canvasId)}`;
  }

  /** The user name the editor writes into creator/lastEditor. */
  getStorageAdapterUser() {
    return this.user;
  }

  get writeEndpoint() {
    if (!this.session) throw new Error('iiifsrv: not signed in; annotations are read-only');
    return `${this.base}/annotot`;
  }

  async request(url, options = {}) {
    const headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
    if (this.session && options.method && options.method !== 'GET') {
      headers['X-CSRF-Token'] = this.session.csrf;
    }
    const response = await fetch(url, { ...options, credentials: 'same-origin', headers });
    if (!response.ok) {
      const message = (await response.text()).trim();
      throw new Error(`iiifsrv: ${options.method || 'GET'} ${response.status} ${message}`);
    }
    return response;
  }

  async create(annotation) {
    annotation = normalise(annotation, this.canvasId);
    const body = {
      annotation: { canvas: this.canvasId, data: JSON.stringify(annotation), uuid: annotation.id },
    };
    await this.request(this.writeEndpoint, { body: JSON.stringify(body), method: 'POST' });
    return this.all();
  }

  async update(annotation) {
    annotation = normalise(annotation, this.canvasId);
    const body = { annotation: { data: JSON.stringify(annotation), uuid: annotation.id } };
    const url = `${this.writeEndpoint}/${encodeURIComponent(annotation.id)}`;
    await this.request(url, { body: JSON.stringify(body), method: 'PATCH' });
    return this.all();
  }

  async delete(annotationId) {
    const url = `${this.writeEndpoint}/${encodeURIComponent(annotationId)}`;
    await this.request(url, { method: 'DELETE' });
    return this.all();
  }

  async get(annotationId) {
    const url = `${this.base}/annotot/${encodeURIComponent(annotationId)}`;
    return (await this.request(url)).json();
  }

  async all() {
    const page = await (await this.request(this.annotationPageId)).json();
    return { ...page, items: (page.items || []).map(marked) };
  }
}
