// Bundles Mirador 4 with mirador-annotation-editor (an ES module that imports Mirador, React and
// MUI, so they must come from one bundle) into ../iiifsrv/static/build, served at /static/build/.
// The manifest (.vite/manifest.json) tells iiifsrv the hashed file names.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/static/build/',
  publicDir: false,
  logLevel: 'warn',
  build: {
    outDir: '../iiifsrv/static/build',
    emptyOutDir: true,
    manifest: true,
    chunkSizeWarningLimit: 8000,
    sourcemap: false,
    rollupOptions: {
      input: { mirador: 'src/mirador.js', compare: 'src/compare.js', uv: 'src/uv.js' },
      onwarn(warning, warn) {
        // MUI's "use client" directives mean nothing outside React Server Components.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  // Our plugins (src/spectrum/*.jsx) use React's automatic JSX runtime.
  esbuild: { jsx: 'automatic' },
  define: { 'process.env.NODE_ENV': JSON.stringify('production') },
});
