import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LiveStream, backoffDelay, DEFAULT_BACKOFF, streamUrl, type SocketLike } from '../src/lib/stream'
import type { StudioEvent } from '../src/lib/types'

class FakeSocket implements SocketLike {
  readyState = 0
  onopen: SocketLike['onopen'] = null
  onmessage: SocketLike['onmessage'] = null
  onclose: SocketLike['onclose'] = null
  onerror: SocketLike['onerror'] = null
  sent: Record<string, unknown>[] = []
  closed: { code?: number; reason?: string } | null = null

  send(data: string): void {
    this.sent.push(JSON.parse(data))
  }

  close(code?: number, reason?: string): void {
    this.closed = { code, reason }
    this.readyState = 3
  }

  open(): void {
    this.readyState = 1
    this.onopen?.({})
  }

  frame(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) })
  }

  drop(code = 1006): void {
    this.readyState = 3
    this.onclose?.({ code, reason: '' })
  }
}

function payload(cursor: number, extra: Record<string, unknown> = {}) {
  return {
    cursor,
    timestamp: '2026-11-25T10:00:00.000Z',
    agent_id: 'a1',
    session_id: 's1',
    channel: 'progress',
    type: 'text_chunk',
    event_type: 'text_chunk',
    data: { delta: `d${cursor}` },
    ...extra,
  }
}

function setup(options: Partial<ConstructorParameters<typeof LiveStream>[0]> = {}) {
  const sockets: FakeSocket[] = []
  const received: StudioEvent[] = []
  const stream = new LiveStream({
    url: 'ws://studio/v1/dashboard/events/stream',
    createSocket: () => {
      const s = new FakeSocket()
      sockets.push(s)
      return s
    },
    random: () => 0.5, // no jitter
    onEvents: (events) => received.push(...events),
    ...options,
  })
  return { stream, sockets, received }
}

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('LiveStream', () => {
  it('subscribes to everything in batch mode on open, without a cursor the first time', () => {
    const { stream, sockets } = setup()
    stream.start()
    sockets[0].open()
    expect(sockets[0].sent[0]).toEqual({ action: 'subscribe', filters: {}, batch: true })
    expect(stream.connection.state).toBe('open')
  })

  it('tells when the Studio comes back on another database, even before any event', () => {
    let changes = 0
    const { stream, sockets } = setup({ onStoreChanged: () => (changes += 1) })
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'connected', payload: { store_id: 'aaaa' } })
    sockets[0].drop()
    vi.advanceTimersByTime(60_000)
    sockets[1].open()
    sockets[1].frame({ type: 'connected', payload: { store_id: 'aaaa' } })
    expect(changes).toBe(0) // the same database: resume
    sockets[1].drop()
    vi.advanceTimersByTime(60_000)
    sockets[2].open()
    sockets[2].frame({ type: 'connected', payload: { store_id: 'bbbb' } })
    expect(changes).toBe(1)
  })

  it('delivers batched and single event frames in cursor order', () => {
    const { stream, sockets, received } = setup()
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'events', payload: [payload(2), payload(1)] })
    sockets[0].frame({ type: 'event', payload: payload(3) })
    expect(received.map((e) => e.cursor)).toEqual([1, 2, 3])
    expect(received[2]).toMatchObject({ agent_id: 'a1', session_id: 's1', type: 'text_chunk', data: { delta: 'd3' } })
    expect(stream.lastCursor).toBe(3)
  })

  it('reconnects with growing back-off after the connection drops', () => {
    const { stream, sockets } = setup()
    stream.start()
    sockets[0].open()
    sockets[0].drop()
    expect(stream.connection.state).toBe('reconnecting')
    vi.advanceTimersByTime(DEFAULT_BACKOFF.initialMs - 1)
    expect(sockets).toHaveLength(1)
    vi.advanceTimersByTime(1)
    expect(sockets).toHaveLength(2)
    sockets[1].drop() // refused again: the wait doubles
    vi.advanceTimersByTime(DEFAULT_BACKOFF.initialMs * 2 - 1)
    expect(sockets).toHaveLength(2)
    vi.advanceTimersByTime(1)
    expect(sockets).toHaveLength(3)
  })

  it('resumes from the last cursor and shows no event twice', () => {
    const { stream, sockets, received } = setup()
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'events', payload: [payload(1), payload(2)] })
    sockets[0].drop()
    vi.advanceTimersByTime(DEFAULT_BACKOFF.initialMs)
    sockets[1].open()
    expect(sockets[1].sent[0]).toEqual({ action: 'subscribe', filters: {}, batch: true, since: 2 })
    // The server replays after the cursor; an overlapping replay is still dropped.
    sockets[1].frame({ type: 'events', payload: [payload(2), payload(3)] })
    sockets[1].frame({ type: 'event', payload: payload(3) })
    expect(received.map((e) => e.cursor)).toEqual([1, 2, 3])
    expect(stream.connection.reconnects).toBe(1)
  })

  it('resets the back-off once the new connection hears from the server', () => {
    const { stream, sockets } = setup()
    stream.start()
    sockets[0].drop()
    vi.advanceTimersByTime(500)
    sockets[1].drop()
    vi.advanceTimersByTime(1000)
    sockets[2].open()
    sockets[2].frame({ type: 'stats', payload: {} })
    expect(stream.connection.attempt).toBe(0)
    sockets[2].drop()
    expect(stream.connection.retryAt! - Date.now()).toBe(500)
  })

  it('replaces a silent connection after the idle timeout', () => {
    const { stream, sockets } = setup()
    stream.start()
    sockets[0].open()
    vi.advanceTimersByTime(45_000 + 15_000)
    expect(sockets[0].closed?.code).toBe(4000)
    expect(stream.connection.state).toBe('reconnecting')
  })

  it('sends JSON pings while open', () => {
    const { stream, sockets } = setup()
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'pong', payload: null })
    vi.advanceTimersByTime(15_000)
    expect(sockets[0].sent.at(-1)).toEqual({ action: 'ping' })
  })

  it('stops for good when asked', () => {
    const { stream, sockets } = setup()
    stream.start()
    sockets[0].open()
    stream.stop()
    vi.advanceTimersByTime(60_000)
    expect(sockets).toHaveLength(1)
    expect(stream.connection.state).toBe('stopped')
  })

  it('hands agent frames on', () => {
    const agents: unknown[] = []
    const s = new FakeSocket()
    const stream = new LiveStream({ url: 'x', createSocket: () => s, onAgent: (a) => agents.push(a) })
    stream.start()
    s.open()
    s.frame({ type: 'agent', payload: { id: 'a1', status: 'online' } })
    expect(agents).toEqual([{ id: 'a1', status: 'online' }])
  })

  it('resumes after a seeded cursor', () => {
    const { stream, sockets } = setup()
    stream.seedCursor(41)
    stream.start()
    sockets[0].open()
    expect(sockets[0].sent[0]).toMatchObject({ since: 41 })
  })
})

describe('backoffDelay and streamUrl', () => {
  it('grows exponentially up to the cap, with bounded jitter', () => {
    const opts = { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0.2 }
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, opts, () => 0.5))).toEqual([
      500, 1000, 2000, 4000, 8000, 10_000, 10_000,
    ])
    expect(backoffDelay(1, opts, () => 0)).toBe(400)
    expect(backoffDelay(1, opts, () => 1)).toBe(600)
  })

  it('uses the page origin with ws or wss', () => {
    expect(streamUrl({ protocol: 'http:', host: 'h:3032' })).toBe('ws://h:3032/v1/dashboard/events/stream')
    expect(streamUrl({ protocol: 'https:', host: 'h' })).toBe('wss://h/v1/dashboard/events/stream')
  })
})

describe('LiveStream gap recovery', () => {
  it('keeps ignoring old frames until every subscribe sent has been answered', () => {
    const { stream, sockets, received } = setup()
    stream.start()
    sockets[0].open() // first subscribe, not answered yet
    sockets[0].frame({ type: 'dropped', payload: { count: 1 } })
    sockets[0].frame({ type: 'subscribed', payload: {} }) // answers the first only
    sockets[0].frame({ type: 'events', payload: [payload(9)] })
    expect(received).toHaveLength(0)
    sockets[0].frame({ type: 'subscribed', payload: {} })
    sockets[0].frame({ type: 'events', payload: [payload(1)] })
    expect(received.map((e) => e.cursor)).toEqual([1])
  })

  it('asks for a replay when the server dropped events, ignoring frames past the gap', () => {
    const { stream, sockets, received } = setup()
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'subscribed', payload: {} })
    sockets[0].frame({ type: 'events', payload: [payload(1), payload(2)] })
    sockets[0].frame({ type: 'dropped', payload: { count: 3 } })
    expect(sockets[0].sent.at(-1)).toEqual({ action: 'subscribe', filters: {}, batch: true, since: 2 })
    // Already on the way: past the gap (3..5 were lost); not delivered yet.
    sockets[0].frame({ type: 'events', payload: [payload(6)] })
    expect(received.map((e) => e.cursor)).toEqual([1, 2])
    sockets[0].frame({ type: 'subscribed', payload: {} })
    sockets[0].frame({ type: 'events', payload: [payload(3), payload(4), payload(5), payload(6)], replay: true })
    sockets[0].frame({ type: 'replayed', payload: { cursor: 6, count: 4 } })
    sockets[0].frame({ type: 'events', payload: [payload(6), payload(7)] })
    expect(received.map((e) => e.cursor)).toEqual([1, 2, 3, 4, 5, 6, 7])
  })
})

describe('LiveStream cursor reset', () => {
  it('re-subscribes from the given cursor and accepts lower cursors again', () => {
    const { stream, sockets, received } = setup()
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'events', payload: [payload(50)] })
    sockets[0].frame({ type: 'subscribed', payload: {} })
    stream.resetCursor(0)
    expect(sockets[0].sent.at(-1)).toEqual({ action: 'subscribe', filters: {}, batch: true, since: 0 })
    // Still from the old subscription: ignored until the new one is answered.
    sockets[0].frame({ type: 'events', payload: [payload(60)] })
    sockets[0].frame({ type: 'subscribed', payload: {} })
    sockets[0].frame({ type: 'events', payload: [payload(1), payload(2)] })
    expect(received.map((e) => e.cursor)).toEqual([50, 1, 2])
  })

  it('hands request frames to onRequest, whole, even while recovering from a gap', () => {
    const requests: unknown[] = []
    const sockets: FakeSocket[] = []
    const stream = new LiveStream({
      url: 'ws://x',
      createSocket: () => {
        const s = new FakeSocket()
        sockets.push(s)
        return s
      },
      onRequest: (view) => requests.push(view),
    })
    stream.start()
    sockets[0].open()
    sockets[0].frame({ type: 'dropped', payload: { count: 3 } })
    sockets[0].frame({ type: 'request', payload: { id: 'r_1', stage: 'pending' } })
    sockets[0].frame({ type: 'request', payload: null })
    expect(requests).toEqual([{ id: 'r_1', stage: 'pending' }])
  })
})
