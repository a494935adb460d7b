import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { defineConfig, type Plugin } from 'vitest/config';

/** JupyterLab packages import their SVG icons as strings (webpack raw loader); do the same here. */
const rawSvg: Plugin = {
  name: 'reeflab-raw-svg',
  enforce: 'pre',
  load(id) {
    if (id.endsWith('.svg')) {
      return `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`;
    }
    return null;
  }
};

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [rawSvg],
  test: {
    environment: 'jsdom',
    include: ['src/__tests__/**/*.test.{ts,tsx}'],
    setupFiles: ['src/__tests__/setup.ts'],
    // JupyterLab and Lumino ship ES modules without "type": "module": let vite transform them
    server: { deps: { inline: [/@jupyterlab\//, /@jupyter\//, /@lumino\//] } },
    testTimeout: 10000
  }
});
