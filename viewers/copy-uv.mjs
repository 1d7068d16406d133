// Copies Universal Viewer's UMD build (it loads its chunks relative to UV.js) and its CSS into
// ../iiifsrv/static/build/uv/, after `vite build` has emptied the folder.
//
// One patch: UV 4.4 gives OpenSeadragon data: URLs for its button images but `prefixUrl:
// undefined`, so OpenSeadragon keeps its default "/images/" and requests
// /images/data:image/gif;base64,… (a 404 on every UV page). An empty prefix keeps the data: URLs.
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const from = join(here, 'node_modules', 'universalviewer', 'dist');
const to = join(here, '..', 'iiifsrv', 'static', 'build', 'uv');
mkdirSync(to, { recursive: true });
cpSync(join(from, 'umd'), join(to, 'umd'), { recursive: true });
cpSync(join(from, 'uv.css'), join(to, 'uv.css'));

const UNSET_PREFIX = 'prefixUrl:void 0,';
const patched = [];
for (const name of readdirSync(join(to, 'umd'))) {
  if (!name.endsWith('.js')) continue;
  const file = join(to, 'umd', name);
  const text = readFileSync(file, 'utf8');
  if (text.includes(UNSET_PREFIX)) {
    writeFileSync(file, text.replaceAll(UNSET_PREFIX, 'prefixUrl:"",'));
    patched.push(name);
  }
}
if (patched.length !== 1) {
  // A new UV version: check whether the patch is still needed (see the comment above).
  throw new Error(`copy-uv: expected one chunk with "${UNSET_PREFIX}", found ${patched.length}`);
}
console.log(`copied Universal Viewer to ${to} (OpenSeadragon prefixUrl patched in ${patched[0]})`);
