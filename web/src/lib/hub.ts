/**
 * The console's live state: one LiveStream for the whole app, a bounded buffer of recent events,
 * the agents table kept current by `agent` frames, and per-second rates for live charts.
 *
 * Events arrive at any rate; views are told at most once per animation frame (with a timer as a
 * fallback in background tabs), with the events of that frame as one batch.
 */
import { normalizeEvent, request } from './api'
import { isError } from './events'
import { RequestStore, type RequestView } from './requests'
import { Ring, RateSeries } from './ring'
import { LiveStream, type ConnectionInfo } from './stream'
import type { AgentView, EventsPage, StudioEvent } from './types'

export interface HubOptions {
  url: string
  /** How many recent events the live tail keeps. */
  capacity?: number
  createSocket?: ConstructorParameters<typeof LiveStream>[0]['createSocket']
}

type BatchListener = (events: StudioEvent[]) => void

const MAX_PENDING = 100_000

export class LiveHub {
  readonly events: Ring<StudioEvent>
  readonly agents = new Map<string, AgentView>()
  /** Requests of agents to people: pending ones and the newest decided ones. */
  readonly requests = new RequestStore()
  readonly eventRate = new RateSeries(300)
  readonly tokenRate = new RateSeries(300)
  readonly errorRate = new RateSeries(300)
  readonly stream: LiveStream
  connection: ConnectionInfo
  serverStats: Record<string, unknown> | null = null
  serverError: string | null = null
  readonly startedAt = Date.now()
  /** Bumped once per flushed frame; React reads it through useSyncExternalStore. */
  version = 0
  /** Events received since the page loaded (after de-duplication). */
  received = 0
  /** Times the Studio came back with another database and the stream started over. */
  storeResets = 0
  /** Bumped when an event names an agent the table does not know: the table reloads. */
  unknownAgents = 0

  /** The newest event any view saw, live or loaded from history: what a reconnect checks. */
  private newestSeen: StudioEvent | null = null
  private readonly listeners = new Set<() => void>()
  private readonly batchListeners = new Set<BatchListener>()
  private pending: StudioEvent[] = []
  private scheduled = false
  private frame: number | null = null
  private timer: ReturnType<typeof setTimeout> | null = null

  constructor(options: HubOptions) {
    this.events = new Ring<StudioEvent>(options.capacity ?? 20_000)
    this.stream = new LiveStream({
      url: options.url,
      createSocket: options.createSocket,
      onEvents: (events) => this.receive(events),
      onAgent: (agent) => this.receiveAgent(agent),
      onRequest: (view) => this.receiveRequest(view),
      onStats: (stats) => {
        this.serverStats = stats
      },
      onServerError: (message) => {
        this.serverError = message
        this.schedule()
      },
      onStoreChanged: () => this.resetStore(),
      onConnection: (info) => {
        const reconnected = info.reconnects > this.connection.reconnects
        this.connection = info
        if (reconnected) void this.checkStoreReset()
        this.schedule()
      },
    })
    this.connection = this.stream.connection
  }

  start(): void {
    this.stream.start()
  }

  /**
   * After a reconnect to a Studio that does not name its database (`connected.store_id`, which
   * `onStoreChanged` follows): find out whether it came back with another (or an emptied)
   * database, in which case resuming after our cursor would skip everything new. It did if its
   * newest cursor is below ours, or if the event it stores at our last cursor is not the one we
   * saw there (a new database that already holds more events than the old one).
   */
  async checkStoreReset(retries = 3): Promise<void> {
    // A Studio that names its database says so itself, at once (`onStoreChanged`).
    if (this.stream.storeId !== null) return
    const seen = this.newestSeen
    const ours = Math.max(this.stream.lastCursor, seen?.cursor ?? 0)
    if (ours === 0) return
    try {
      const page = await request<EventsPage>('/events', { query: { limit: 1 } })
      const newest = page.events?.[0]?.cursor ?? 0
      let replaced = newest < ours
      if (!replaced && seen && seen.cursor === ours) {
        const at = await request<EventsPage>(`/events/since/${ours - 1}`, { query: { limit: 1 } })
        const raw = at.events?.[0]
        const stored = raw ? normalizeEvent(raw) : null
        replaced =
          !stored ||
          stored.cursor !== ours ||
          stored.timestamp !== seen.timestamp ||
          stored.type !== seen.type ||
          stored.agent_id !== seen.agent_id
      }
      if (replaced) this.resetStore()
    } catch {
      // Not reachable yet (a Studio still starting): ask again shortly, then at the next reconnect.
      if (retries > 0) setTimeout(() => void this.checkStoreReset(retries - 1), 1000)
    }
  }

  /** Start over on another database: what we hold came from the one before. */
  resetStore(): void {
    this.newestSeen = null
    this.events.clear()
    this.requests.clear()
    // A stream that never had an event has nothing to skip: only the views start over.
    if (this.stream.lastCursor > 0) this.stream.resetCursor(0)
    this.storeResets += 1
    this.schedule()
  }

  stop(): void {
    this.stream.stop()
    this.cancelSchedule()
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  getVersion = (): number => this.version

  /** Be handed every event once, in cursor order, batched per frame. */
  onEvents(listener: BatchListener): () => void {
    this.batchListeners.add(listener)
    return () => this.batchListeners.delete(listener)
  }

  receive(events: StudioEvent[]): void {
    const now = Date.now()
    this.received += events.length
    this.noteSeen(events)
    this.events.pushAll(events)
    this.eventRate.add(now, events.length)
    let tokens = 0
    let errors = 0
    for (const event of events) {
      if (event.type === 'token_usage') {
        const d = event.data
        const total = Number(d.total_tokens ?? Number(d.input_tokens ?? 0) + Number(d.output_tokens ?? 0))
        if (Number.isFinite(total)) tokens += total
      } else if (isError(event)) {
        errors += 1
      }
      const agent = this.agents.get(event.agent_id)
      if (agent) {
        if (!agent.last_event_at || agent.last_event_at < event.timestamp) {
          this.agents.set(event.agent_id, { ...agent, last_event_at: event.timestamp })
        }
      } else if (event.agent_id) {
        this.unknownAgents += 1
      }
    }
    if (tokens) this.tokenRate.add(now, tokens)
    if (errors) this.errorRate.add(now, errors)
    this.pending.push(...events)
    if (this.pending.length > MAX_PENDING) this.pending.splice(0, this.pending.length - MAX_PENDING)
    this.schedule()
  }

  receiveAgent(agent: AgentView): void {
    const known = this.agents.get(agent.id)
    // Keep the newer last-event time the hub may have seen in the events themselves.
    const lastEvent =
      known?.last_event_at && (!agent.last_event_at || known.last_event_at > agent.last_event_at)
        ? known.last_event_at
        : agent.last_event_at
    this.agents.set(agent.id, { ...agent, last_event_at: lastEvent })
    this.schedule()
  }

  receiveRequest(view: RequestView): void {
    if (this.requests.upsert(view)) this.schedule()
  }

  /** Note events a view loaded from history, so a replaced store is noticed for them too. */
  noteSeen(events: readonly StudioEvent[]): void {
    for (const event of events) {
      if (!this.newestSeen || event.cursor > this.newestSeen.cursor) this.newestSeen = event
    }
  }

  /** Tell views about changes made directly to the hub's stores (REST snapshots). */
  changed(): void {
    this.schedule()
  }

  /** Replace the table with a REST snapshot (agents the Studio no longer knows leave it). */
  setAgents(list: AgentView[]): void {
    const keep = new Set(list.map((a) => a.id))
    for (const id of [...this.agents.keys()]) if (!keep.has(id)) this.agents.delete(id)
    for (const agent of list) this.receiveAgent(agent)
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    if (typeof requestAnimationFrame === 'function') {
      this.frame = requestAnimationFrame(() => this.flush())
    }
    // Animation frames stop in background tabs: a timer keeps the buffers drained.
    this.timer = setTimeout(() => this.flush(), 250)
  }

  private cancelSchedule(): void {
    if (this.frame !== null && typeof cancelAnimationFrame === 'function') cancelAnimationFrame(this.frame)
    if (this.timer !== null) clearTimeout(this.timer)
    this.frame = null
    this.timer = null
    this.scheduled = false
  }

  flush(): void {
    this.cancelSchedule()
    const batch = this.pending
    this.pending = []
    if (batch.length > 0) {
      for (const listener of this.batchListeners) {
        try {
          listener(batch)
        } catch (error) {
          console.error('live view failed on a batch', error)
        }
      }
    }
    this.version += 1
    for (const listener of this.listeners) listener()
  }
}
