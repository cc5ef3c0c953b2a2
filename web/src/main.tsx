import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { App } from './App'
import { LiveHub } from './lib/hub'
import { streamUrl } from './lib/stream'
import './styles.css'

// The app starts the stream once this browser may read (see useAuthGate in App).
const hub = new LiveHub({ url: streamUrl(window.location) })
// Exposed for the browser tests and the benchmark (read-only inspection of live state).
;(window as unknown as { __asterHub: LiveHub }).__asterHub = hub

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App hub={hub} />
  </StrictMode>,
)
