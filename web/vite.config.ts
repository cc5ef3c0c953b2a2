/// <reference types="vitest/config" />
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { defineConfig, type Plugin } from 'vite'
import react from '@vitejs/plugin-react'

// The console is served by the Studio under /studio/ and built into the Python package's
// static folder (git-ignored, shipped in the wheel). `npm run dev` proxies the API and the
// live stream to a Studio on ASTER_STUDIO_DEV_TARGET (default http://127.0.0.1:3032).
const target = process.env.ASTER_STUDIO_DEV_TARGET ?? 'http://127.0.0.1:3032'

/**
 * The API browser at /docs: Swagger UI's files from its npm package, served by the Studio
 * itself (FastAPI's page loads them from a CDN, blank offline, and starts them with an inline
 * script, which the Studio's Content-Security-Policy refuses).
 */
function apiBrowser(): Plugin {
  const dist = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))
  const files = ['swagger-ui-bundle.js', 'swagger-ui.css', 'LICENSE', 'NOTICE']
  const init = "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' })\n"
  return {
    name: 'aster-api-browser',
    generateBundle() {
      for (const file of files) {
        this.emitFile({ type: 'asset', fileName: `swagger/${file}`, source: readFileSync(join(dist, file)) })
      }
      this.emitFile({ type: 'asset', fileName: 'swagger/init.js', source: init })
    },
  }
}

export default defineConfig({
  base: '/studio/',
  plugins: [react(), apiBrowser()],
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
