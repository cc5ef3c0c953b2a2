/** React glue: the hub in context, per-frame live versions, REST data with refresh. */
import { createContext, useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore } from 'react'
import { request } from './api'
import type { LiveHub } from './hub'
import type { RequestStore } from './requests'

export const HubContext = createContext<LiveHub | null>(null)

export function useHub(): LiveHub {
  const hub = useContext(HubContext)
  if (!hub) throw new Error('useHub outside HubContext')
  return hub
}

/** Re-render when the hub flushes (at most once per animation frame). */
export function useLive(): LiveHub {
  const hub = useHub()
  useSyncExternalStore(hub.subscribe, hub.getVersion)
  return hub
}

/** Re-render only when the hub's requests change (cheap for views the event rate must not touch). */
export function useRequestStore(): RequestStore {
  const hub = useHub()
  useSyncExternalStore(hub.subscribe, () => hub.requests.version)
  return hub.requests
}

/** Re-render on hub flushes, but at most once per `ms` (for charts and big tables). */
export function useLiveThrottled(ms: number): LiveHub {
  const hub = useHub()
  const [, setTick] = useState(0)
  useEffect(() => {
    let last = 0
    let timer: ReturnType<typeof setTimeout> | null = null
    const fire = () => {
      timer = null
      last = Date.now()
      setTick((t) => t + 1)
    }
    const unsubscribe = hub.subscribe(() => {
      if (timer) return
      const wait = Math.max(0, ms - (Date.now() - last))
      timer = setTimeout(fire, wait)
    })
    return () => {
      unsubscribe()
      if (timer) clearTimeout(timer)
    }
  }, [hub, ms])
  return hub
}

/** The current time, refreshed every `ms` (for relative times and uptimes). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms)
    return () => clearInterval(id)
  }, [ms])
  return now
}

export interface ApiState<T> {
  data: T | undefined
  error: string | null
  loading: boolean
  reload: () => void
}

/**
 * GET a dashboard route; refetch when the key changes, every `refreshMs`, and on reload().
 * Keeps the last good data while a refresh is in flight or fails.
 */
export function useApi<T>(
  path: string | null,
  query?: Record<string, string | number | undefined | null>,
  refreshMs?: number,
): ApiState<T> {
  const [data, setData] = useState<T | undefined>(undefined)
  const [error, setError] = useState<string | null>(null)
  const [loading, setLoading] = useState(path !== null)
  const [nonce, setNonce] = useState(0)
  const key = path === null ? null : `${path}?${JSON.stringify(query ?? {})}`
  const lastKey = useRef<string | null>(null)

  useEffect(() => {
    if (key === null || path === null) return
    if (lastKey.current !== key) {
      lastKey.current = key
      setData(undefined)
    }
    const controller = new AbortController()
    setLoading(true)
    request<T>(path, { query: query ?? undefined, signal: controller.signal })
      .then((value) => {
        setData(value)
        setError(null)
      })
      .catch((err: unknown) => {
        if (controller.signal.aborted) return
        setError(err instanceof Error ? err.message : String(err))
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false)
      })
    return () => controller.abort()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, nonce])

  useEffect(() => {
    if (!refreshMs || key === null) return
    const id = setInterval(() => {
      if (document.visibilityState !== 'hidden') setNonce((n) => n + 1)
    }, refreshMs)
    return () => clearInterval(id)
  }, [refreshMs, key])

  const reload = useCallback(() => setNonce((n) => n + 1), [])
  return { data, error, loading, reload }
}
