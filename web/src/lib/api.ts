/** A thin client for the Studio's REST API: unwraps the `{success, data}` envelope. */
import { authRequired, csrfToken } from './auth'
import type { RawEventItem, StudioEvent } from './types'

export class ApiError extends Error {
  readonly status: number
  readonly code: string
  /** The whole error object of the envelope (a 409 conflict names who decided and when). */
  readonly detail: Record<string, unknown>

  constructor(status: number, code: string, message: string, detail: Record<string, unknown> = {}) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.detail = detail
  }
}

export const API_BASE = '/v1/dashboard'

type Query = Record<string, string | number | boolean | null | undefined>

/** Build a query string from the set (non-empty) values only. */
export function queryString(query: Query | undefined): string {
  if (!query) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue
    params.set(key, String(value))
  }
  const text = params.toString()
  return text ? `?${text}` : ''
}

export function apiUrl(path: string, query?: Query): string {
  return `${API_BASE}${path}${queryString(query)}`
}

export async function request<T>(
  path: string,
  options: { query?: Query; method?: string; body?: unknown; signal?: AbortSignal } = {},
): Promise<T> {
  const method = options.method ?? 'GET'
  const headers: Record<string, string> = { Accept: 'application/json' }
  const csrf = csrfToken()
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf
  const init: RequestInit = { method, headers, signal: options.signal, credentials: 'same-origin' }
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(options.body)
  }
  const response = await fetch(apiUrl(path, options.query), init)
  if (response.status === 401) authRequired()
  let body: unknown = null
  try {
    body = await response.json()
  } catch {
    throw new ApiError(response.status, 'bad_response', response.statusText || 'Request failed')
  }
  const envelope = body as {
    success?: boolean
    data?: T
    error?: { code?: string; message?: string } & Record<string, unknown>
  }
  if (!response.ok || envelope.success !== true) {
    const code = envelope.error?.code ?? 'request_failed'
    throw new ApiError(response.status, code, envelope.error?.message ?? code, envelope.error ?? {})
  }
  return envelope.data as T
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {}
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : String(value)
}

/**
 * Normalize a REST item (`{cursor, timestamp, ..., event}`) or a stream payload
 * (`{cursor, timestamp, ..., data}`) into one StudioEvent.
 */
export function normalizeEvent(item: RawEventItem | Record<string, unknown>): StudioEvent {
  const raw = item as RawEventItem
  const data = asRecord(raw.data ?? raw.event)
  const timestamp = str(raw.timestamp)
  const parsed = Date.parse(timestamp)
  const sessionId = raw.session_id ?? data.session_id
  return {
    cursor: Number(raw.cursor),
    timestamp,
    ts: Number.isFinite(parsed) ? parsed : 0,
    agent_id: str(raw.agent_id ?? data.agent_id),
    session_id: sessionId == null || sessionId === '' ? null : str(sessionId),
    channel: str(raw.channel ?? data.channel),
    type: str(raw.event_type ?? raw.type ?? data.event_type ?? data.type),
    data,
  }
}
