import { formatCount, formatDuration } from './format'

/** `/healthz` as the Studio answers it (api/schemas.py, `Healthz`). */
export interface Healthz {
  status: 'ok' | 'degraded'
  version: string
  uptime_s: number
  store: { backend: string; id: string; status: string; error?: string; latency_ms?: number }
  write_queue: number
  agents_online: number
  cluster?: {
    instance: string
    redis: string
    connected: boolean
    peers: string[]
    held_runs: number
    published_events: number
    received_events: number
    filled_events: number
    dropped_messages: number
  } | null
}

/** `/healthz` (outside the dashboard's API and its envelope; public, so no credential). */
export async function fetchHealth(signal?: AbortSignal): Promise<Healthz> {
  const response = await fetch('/healthz', { headers: { Accept: 'application/json' }, signal })
  // 503 while the store cannot be reached: the body says why.
  return (await response.json()) as Healthz
}

/** The facts the Settings page lists of this Studio: [label, value, is the value a problem]. */
export function healthFacts(h: Healthz): [string, string, boolean][] {
  const store = h.store
  const facts: [string, string, boolean][] = [
    ['version', h.version, false],
    ['up for', formatDuration(h.uptime_s * 1000), false],
    ['storage', store.backend, false],
    [
      'storage health',
      store.status === 'healthy'
        ? `healthy${store.latency_ms != null ? ` (${store.latency_ms.toFixed(1)} ms)` : ''}`
        : `${store.status}: ${store.error ?? 'no reason given'}`,
      store.status !== 'healthy',
    ],
    ['write queue', formatCount(h.write_queue), false],
    ['agents online', formatCount(h.agents_online), false],
  ]
  const c = h.cluster
  if (!c) {
    facts.push(['cluster', 'none: this Studio runs alone', false])
    return facts
  }
  facts.push(
    ['cluster name', c.instance, false],
    ['Redis', `${c.redis} · ${c.connected ? 'connected' : 'not reachable: reading missed events from the database'}`, !c.connected],
    [
      'other Studios',
      c.peers.length ? c.peers.join(', ') : 'none heard from in the last 5 s',
      false,
    ],
    [
      'events shared',
      `${formatCount(c.published_events)} sent, ${formatCount(c.received_events)} received, ${formatCount(c.filled_events)} read from the database`,
      false,
    ],
  )
  return facts
}
