// Where a canvas's spectral service is, and how canvas coordinates map to its pixels. Pure: it
// reads the canvas's JSON (as in the manifest) and the info.json documents Mirador has loaded.
//
// The service is found, in order, in the canvas's own `service` list, then in the `service` list
// of the info.json of each image (each item of a Choice) painted on the canvas. Either way it is
// the entry whose profile is SPECTRA_PROFILE; GET <id>?x=&y=&radius= answers JSON.

export const SPECTRA_PROFILE = 'https://iiifsrv.example/api/spectra/1';

const asList = (value) => {
  if (value == null) return [];
  return Array.isArray(value) ? value : [value];
};

const idOf = (value) => {
  if (typeof value === 'string') return value;
  return (value && (value.id || value['@id'])) || null;
};

/** The id of the spectral service in a list of services, or null. */
export function spectralServiceIn(services) {
  const found = asList(services).find(
    (s) => s && asList(s.profile).includes(SPECTRA_PROFILE) && idOf(s),
  );
  return found ? idOf(found) : null;
}

/** The images painted on a canvas (v3 items or v2 images), the items of a Choice expanded:
 * [{ width, height, services: [image service ids] }]. */
export function paintedImages(canvas) {
  const bodies = [];
  asList(canvas && canvas.items).forEach((page) => {
    asList(page && page.items).forEach((anno) => {
      if (anno && (anno.motivation === 'painting' || asList(anno.motivation).includes('painting'))) {
        bodies.push(...asList(anno.body));
      }
    });
  });
  asList(canvas && canvas.images).forEach((anno) => bodies.push(...asList(anno && anno.resource)));
  const images = [];
  bodies.forEach((body) => {
    const type = body && (body.type || body['@type']);
    const choices = type === 'Choice' || type === 'oa:Choice'
      ? [...asList(body.items), ...asList(body.default), ...asList(body.item)]
      : [body];
    choices.forEach((item) => {
      if (!item || typeof item !== 'object') return;
      images.push({
        width: Number(item.width) || null,
        height: Number(item.height) || null,
        services: asList(item.service).map(idOf).filter(Boolean),
      });
    });
  });
  return images;
}

/** The spectral service of a canvas: { url, width, height } (the pixel size that its x and y
 * refer to), or null when neither the canvas nor a loaded info.json declares one.
 * `infoResponses` is Mirador's state: { [image service id]: { json } }. */
export function spectralService(canvas, infoResponses = {}) {
  if (!canvas) return null;
  const images = paintedImages(canvas);
  const sized = images.find((i) => i.width && i.height);
  const size = sized
    ? { width: sized.width, height: sized.height }
    : { width: Number(canvas.width) || null, height: Number(canvas.height) || null };
  const own = spectralServiceIn(canvas.service);
  if (own) return { url: own, ...size };
  for (const image of images) {
    for (const serviceId of image.services) {
      const info = infoResponses[serviceId] && infoResponses[serviceId].json;
      const url = info && spectralServiceIn(info.service);
      if (url) {
        return {
          url,
          width: Number(info.width) || image.width || size.width,
          height: Number(info.height) || image.height || size.height,
        };
      }
    }
  }
  return null;
}

/** The request for the values at a point. */
export function spectrumUrl(service, x, y, radius) {
  const url = new URL(service);
  url.searchParams.set('x', String(x));
  url.searchParams.set('y', String(y));
  url.searchParams.set('radius', String(radius));
  return url.toString();
}

/** The full-resolution pixel under a point of a canvas given as fractions of its width and
 * height (0 ≤ fx, fy < 1), or null outside the image. */
export function pixelAt(fx, fy, width, height) {
  if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1) || !width || !height) return null;
  return { x: Math.floor(fx * width), y: Math.floor(fy * height) };
}
