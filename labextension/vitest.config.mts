import { defineConfig } from 'vitest/config';

// Unit tests of the API client, the store and the renderers. The client and store tests run
// against a real engine (`jupyter_bai.api.serve`, started by test/engine.ts with BAI_PYTHON).
export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    environment: 'node',
    testTimeout: 60000,
    hookTimeout: 120000,
    fileParallelism: false,
    setupFiles: ['test/setup-dom.ts'],
    server: { deps: { inline: [/@jupyterlab\//, /@lumino\//] } }
  }
});
