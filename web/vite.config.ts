/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// The console is served by the Studio under /studio/ and built into the Python package's
// static folder (git-ignored, shipped in the wheel). `npm run dev` proxies the API and the
// live stream to a Studio on ASTER_STUDIO_DEV_TARGET (default http://127.0.0.1:3032).
const target = process.env.ASTER_STUDIO_DEV_TARGET ?? 'http://127.0.0.1:3032'

export default defineConfig({
  base: '/studio/',
  plugins: [react()],
  build: {
    outDir: '../src/aster_studio/static',
    emptyOutDir: true,
    chunkSizeWarningLimit: 800,
  },
  server: {
    // The Studio refuses the console's stream to pages of another origin: the proxied
    // requests say they come from the Studio's own.
    proxy: { '/v1': { target, ws: true, changeOrigin: true, headers: { origin: target } } },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
})
