/**
 * The live stream: one WebSocket to /v1/dashboard/events/stream that reconnects with
 * back-off and resumes from the last cursor it saw, so no event is missed or shown twice.
 *
 * Framework-free on purpose: the socket factory and the clock are injectable, so the
 * reconnect and resume logic is unit-tested without a browser or a server.
 */
import { normalizeEvent } from './api'
import type { RequestView } from './requests'
import type { AgentView, StudioEvent } from './types'

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'stopped'

export interface ConnectionInfo {
  state: ConnectionState
  /** Failed attempts since the last successful connection. */
  attempt: number
  /** When the next reconnect attempt fires (ms since epoch), while reconnecting. */
  retryAt: number | null
  lastCursor: number
  connectedAt: number | null
  /** Number of times the stream reconnected after losing a connection. */
  reconnects: number
  lastError: string | null
}

export interface StreamFilters {
  channels?: string[]
  event_types?: string[]
  agent_ids?: string[]
  session_ids?: string[]
}

/** The subset of the WebSocket API the stream uses. */
export interface SocketLike {
  readonly readyState: number
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null
  onerror: ((ev: unknown) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

export interface BackoffOptions {
  initialMs: number
  maxMs: number
  factor: number
  /** Fraction of the delay added or removed at random (0.2 = plus or minus 20%). */
  jitter: number
}

export interface LiveStreamOptions {
  url: string
  createSocket?: (url: string) => SocketLike
  filters?: StreamFilters
  backoff?: Partial<BackoffOptions>
  random?: () => number
  now?: () => number
  /** How often a JSON ping is sent while open. */
  pingIntervalMs?: number
  /** A connection that receives nothing for this long is presumed dead and replaced. */
  idleTimeoutMs?: number
  onEvents?: (events: StudioEvent[]) => void
  onAgent?: (agent: AgentView) => void
  /** A request (docs/control.md `RequestView`) was created or changed. */
  onRequest?: (request: RequestView) => void
  onStats?: (stats: Record<string, unknown>) => void
  onServerError?: (message: string) => void
  onConnection?: (info: ConnectionInfo) => void
  /** The Studio came back on another database (its `connected` frame names another store). */
  onStoreChanged?: () => void
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0.2 }

/** The delay before reconnect attempt number `attempt` (1-based). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number): number {
  const base = Math.min(options.maxMs, options.initialMs * options.factor ** Math.max(0, attempt - 1))
  const spread = base * options.jitter * (random() * 2 - 1)
  return Math.max(0, Math.round(base + spread))
}

/** The WebSocket URL of the live stream on the Studio that served this page. */
export function streamUrl(location: { protocol: string; host: string }): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}/v1/dashboard/events/stream`
}

const OPEN = 1

export class LiveStream {
  private readonly options: LiveStreamOptions
  private readonly backoff: BackoffOptions
  private readonly random: () => number
  private readonly now: () => number
  private socket: SocketLike | null = null
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private pingTimer: ReturnType<typeof setInterval> | null = null
  private lastFrameAt = 0
  private filters: StreamFilters
  private info: ConnectionInfo = {
    state: 'idle',
    attempt: 0,
    retryAt: null,
    lastCursor: 0,
    connectedAt: null,
    reconnects: 0,
    lastError: null,
  }
  private everOpened = false
  /** The database the Studio said it serves when we last connected (`connected.store_id`). */
  private storeIdSeen: string | null = null
  /** Set when the server dropped events for us: live frames are ignored until the replay. */
  private recovering = false
  /** Subscribe messages sent on this socket and not yet answered with `subscribed`. */
  private unanswered = 0
  /** Events the server reported dropped (each followed by a replay from storage). */
  gapsRecovered = 0

  constructor(options: LiveStreamOptions) {
    this.options = options
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff }
    this.random = options.random ?? Math.random
    this.now = options.now ?? Date.now
    this.filters = options.filters ?? {}
  }

  get connection(): ConnectionInfo {
    return this.info
  }

  /** The highest event cursor delivered so far (0 before the first event). */
  get lastCursor(): number {
    return this.info.lastCursor
  }

  /** Resume after this cursor on the next (re)connect; used when history was loaded first. */
  seedCursor(cursor: number): void {
    if (cursor > this.info.lastCursor) this.update({ lastCursor: cursor })
  }

  /**
   * Forget the cursor: the Studio's store was replaced (its newest cursor is below ours), so
   * resume from `cursor` and re-subscribe at once.
   */
  /** The id of the database the Studio serves, once it said (null from a Studio too old to). */
  get storeId(): string | null {
    return this.storeIdSeen
  }

  resetCursor(cursor: number): void {
    this.info = { ...this.info, lastCursor: Math.max(0, cursor) }
    // Replay what the new store already holds (since 0 included), then go live; frames of the
    // old subscription still on the way are ignored.
    if (this.socket && this.socket.readyState === OPEN) {
      this.recovering = true
      this.subscribe(this.socket, true)
    }
  }

  start(): void {
    if (this.info.state !== 'idle' && this.info.state !== 'stopped') return
    this.connect()
  }

  stop(): void {
    this.clearTimers()
    const socket = this.socket
    this.socket = null
    if (socket) {
      this.detach(socket)
      socket.close(1000, 'client closed')
    }
    this.update({ state: 'stopped', retryAt: null, connectedAt: null })
  }

  /** Skip the remaining back-off and try to connect now. */
  reconnectNow(): void {
    if (this.info.state === 'stopped' || this.info.state === 'open') return
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = null
    this.connect()
  }

  setFilters(filters: StreamFilters): void {
    this.filters = filters
    if (this.socket && this.socket.readyState === OPEN) this.subscribe(this.socket)
  }

  private connect(): void {
    this.clearTimers()
    const create = this.options.createSocket ?? ((url: string) => new WebSocket(url) as unknown as SocketLike)
    let socket: SocketLike
    try {
      socket = create(this.options.url)
    } catch (error) {
      this.update({ lastError: String(error) })
      this.scheduleReconnect()
      return
    }
    this.socket = socket
    this.recovering = false
    this.unanswered = 0
    this.update({ state: this.everOpened ? 'reconnecting' : 'connecting', retryAt: null })
    socket.onopen = () => {
      if (this.socket !== socket) return
      this.lastFrameAt = this.now()
      this.subscribe(socket)
      if (this.everOpened) this.update({ reconnects: this.info.reconnects + 1 })
      this.everOpened = true
      this.update({ state: 'open', connectedAt: this.now(), lastError: null })
      this.startPing(socket)
    }
    socket.onmessage = (message) => {
      if (this.socket !== socket) return
      this.lastFrameAt = this.now()
      // A connection counts as healthy once the server answers; only then the back-off resets.
      if (this.info.attempt !== 0) this.update({ attempt: 0 })
      this.handleFrame(message.data)
    }
    socket.onerror = () => {
      // Always followed by close; the close handler reconnects.
    }
    socket.onclose = (event) => {
      if (this.socket !== socket) return
      this.socket = null
      this.detach(socket)
      this.update({
        connectedAt: null,
        lastError: event.reason || (event.code === 1000 ? null : `closed (${event.code})`),
      })
      this.scheduleReconnect()
    }
  }

  private subscribe(socket: SocketLike, replay = false): void {
    const message: Record<string, unknown> = { action: 'subscribe', filters: this.filters, batch: true }
    if (replay || this.info.lastCursor > 0) message.since = this.info.lastCursor
    this.unanswered += 1
    socket.send(JSON.stringify(message))
  }

  private startPing(socket: SocketLike): void {
    const every = this.options.pingIntervalMs ?? 15_000
    const idle = this.options.idleTimeoutMs ?? 45_000
    this.pingTimer = setInterval(() => {
      if (this.socket !== socket) return
      if (this.now() - this.lastFrameAt > idle) {
        // Nothing heard for too long: the peer is gone without a close frame.
        this.socket = null
        this.detach(socket)
        socket.close(4000, 'idle timeout')
        this.update({ connectedAt: null, lastError: 'no answer from the Studio' })
        this.scheduleReconnect()
        return
      }
      if (socket.readyState === OPEN) socket.send('{"action":"ping"}')
    }, every)
  }

  private scheduleReconnect(): void {
    this.clearTimers()
    const attempt = this.info.attempt + 1
    const delay = backoffDelay(attempt, this.backoff, this.random)
    this.update({ state: 'reconnecting', attempt, retryAt: this.now() + delay })
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.connect()
    }, delay)
  }

  private handleFrame(data: unknown): void {
    if (typeof data !== 'string') return
    let frame: { type?: string; payload?: unknown; message?: string; stats?: unknown }
    try {
      frame = JSON.parse(data)
    } catch {
      return
    }
    switch (frame.type) {
      case 'connected': {
        const id = (frame.payload as { store_id?: unknown } | undefined)?.store_id
        if (typeof id === 'string' && id) {
          const changed = this.storeIdSeen !== null && id !== this.storeIdSeen
          this.storeIdSeen = id
          if (changed) this.options.onStoreChanged?.()
        }
        break
      }
      case 'events':
        if (!this.recovering && Array.isArray(frame.payload)) this.deliver(frame.payload as Record<string, unknown>[])
        break
      case 'dropped':
        // The server's buffer for us overflowed and lost the oldest events. Frames already on
        // the way are past the gap, so ignore them and ask for a replay from the last cursor:
        // storage has them all, and the cursor check drops anything seen twice.
        this.gapsRecovered += 1
        if (!this.recovering && this.socket && this.socket.readyState === OPEN) {
          this.recovering = true
          this.subscribe(this.socket)
        }
        break
      case 'subscribed':
        // Frames of an earlier subscription may still be on the way until every subscribe sent
        // has been answered; only then does recovery end.
        this.unanswered = Math.max(0, this.unanswered - 1)
        if (this.unanswered === 0) this.recovering = false
        break
      case 'event':
        if (!this.recovering && frame.payload && typeof frame.payload === 'object') {
          this.deliver([frame.payload as Record<string, unknown>])
        }
        break
      case 'agent':
        if (frame.payload && typeof frame.payload === 'object') {
          this.options.onAgent?.(frame.payload as AgentView)
        }
        break
      case 'request':
        // A whole view, not a delta: applying it late or twice is harmless.
        if (frame.payload && typeof frame.payload === 'object') {
          this.options.onRequest?.(frame.payload as RequestView)
        }
        break
      case 'stats': {
        const stats = (frame.payload ?? frame.stats) as Record<string, unknown> | null
        if (stats && typeof stats === 'object') this.options.onStats?.(stats)
        break
      }
      case 'error': {
        const payload = frame.payload as { message?: string } | null
        this.options.onServerError?.(payload?.message ?? frame.message ?? 'stream error')
        break
      }
      default:
        break
    }
  }

  /** Hand on events newer than the last cursor, in cursor order; drop the rest (replays). */
  private deliver(payloads: Record<string, unknown>[]): void {
    const events = payloads.map(normalizeEvent).filter((e) => Number.isFinite(e.cursor))
    events.sort((a, b) => a.cursor - b.cursor)
    let last = this.info.lastCursor
    const fresh: StudioEvent[] = []
    for (const event of events) {
      if (event.cursor <= last) continue
      last = event.cursor
      fresh.push(event)
    }
    if (fresh.length === 0) return
    this.info = { ...this.info, lastCursor: last }
    this.options.onEvents?.(fresh)
  }

  private detach(socket: SocketLike): void {
    socket.onopen = null
    socket.onmessage = null
    socket.onclose = null
    socket.onerror = null
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.pingTimer) clearInterval(this.pingTimer)
    this.retryTimer = null
    this.pingTimer = null
  }

  private update(patch: Partial<ConnectionInfo>): void {
    this.info = { ...this.info, ...patch }
    this.options.onConnection?.(this.info)
  }
}
