/**
 * Console login. With auth on, the Studio trades the console token for an HttpOnly session
 * cookie and a CSRF token; every state-changing request must carry the CSRF token. With auth
 * off (the default on loopback) none of this is needed and the console goes straight in.
 */

export interface AuthState {
  auth_enabled: boolean
  authenticated: boolean
  csrf_token: string | null
}

let csrf: string | null = null
let enabled = false
const listeners = new Set<() => void>()

export function csrfToken(): string | null {
  return csrf
}

/** Whether the Studio asked for credentials (known after the first session check). */
export function authEnabled(): boolean {
  return enabled
}

export function setCsrfToken(token: string | null): void {
  csrf = token
}

/** Be told when a request was refused for want of a login (401). */
export function onAuthRequired(listener: () => void): () => void {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

export function authRequired(): void {
  for (const listener of listeners) listener()
}

async function call<T>(url: string, init: RequestInit): Promise<{ ok: boolean; status: number; data?: T; message?: string }> {
  const response = await fetch(url, { ...init, credentials: 'same-origin', headers: { Accept: 'application/json', ...(init.headers ?? {}) } })
  let body: { success?: boolean; data?: T; error?: { message?: string } } = {}
  try {
    body = await response.json()
  } catch {
    // A Studio without these routes answers 404 with no envelope: treated as auth off.
  }
  return { ok: response.ok && body.success === true, status: response.status, data: body.data, message: body.error?.message }
}

/** Whether auth is on and this browser is logged in. */
export async function fetchSession(): Promise<AuthState> {
  const result = await call<AuthState>('/v1/auth/session', { method: 'GET' })
  if (result.status === 404) return { auth_enabled: false, authenticated: true, csrf_token: null }
  if (!result.ok || !result.data) throw new Error(result.message ?? `session check failed (${result.status})`)
  csrf = result.data.csrf_token ?? csrf
  enabled = result.data.auth_enabled
  return result.data
}

export async function login(token: string): Promise<void> {
  const result = await call<{ csrf_token: string }>('/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  })
  if (!result.ok || !result.data) throw new Error(result.message ?? 'Login failed')
  csrf = result.data.csrf_token
}

export async function logout(): Promise<void> {
  await call('/v1/auth/logout', { method: 'POST', headers: csrf ? { 'X-CSRF-Token': csrf } : {} })
  csrf = null
}
