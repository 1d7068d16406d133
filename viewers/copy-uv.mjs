// Copies Universal Viewer's UMD build (it loads its chunks relative to UV.js) and its CSS into
// ../iiifsrv/static/build/uv/, after `vite build` has emptied the folder.
import { cpSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const from = join(here, 'node_modules', 'universalviewer', 'dist');
const to = join(here, '..', 'iiifsrv', 'static', 'build', 'uv');
mkdirSync(to, { recursive: true });
cpSync(join(from, 'umd'), join(to, 'umd'), { recursive: true });
cpSync(join(from, 'uv.css'), join(to, 'uv.css'));
console.log(`copied Universal Viewer to ${to}`);
