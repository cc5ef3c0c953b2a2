import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LiveHub } from '../src/lib/hub'
import type { StudioEvent } from '../src/lib/types'
import { ev, resetCursor } from './helpers'

beforeEach(() => {
  resetCursor()
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

function hub(capacity = 100) {
  return new LiveHub({ url: 'ws://x', capacity, createSocket: () => { throw new Error('no socket in tests') } })
}

describe('LiveHub', () => {
  it('hands views one batch per frame, however many events arrive', () => {
    const h = hub()
    const batches: StudioEvent[][] = []
    let renders = 0
    h.onEvents((b) => batches.push(b))
    h.subscribe(() => (renders += 1))
    for (let i = 0; i < 50; i += 1) h.receive([ev('text_chunk', { delta: 'x' })])
    expect(batches).toHaveLength(0)
    vi.advanceTimersByTime(250) // no animation frames in Node: the timer flushes
    expect(batches).toHaveLength(1)
    expect(batches[0]).toHaveLength(50)
    expect(renders).toBe(1)
  })

  it('keeps only the newest events in the live buffer', () => {
    const h = hub(10)
    for (let i = 0; i < 25; i += 1) h.receive([ev('text_chunk')])
    expect(h.events.size).toBe(10)
    expect(h.events.fromNewest(0)?.cursor).toBe(25)
    expect(h.received).toBe(25)
  })

  it('counts tokens and errors per second for the live charts', () => {
    const h = hub()
    h.receive([
      ev('token_usage', { input_tokens: 100, output_tokens: 50 }),
      ev('error', { severity: 'error', message: 'x' }),
      ev('error', { severity: 'warn', message: 'y' }),
    ])
    const now = Date.now()
    const [, tokens] = h.tokenRate.series(now)
    const [, errors] = h.errorRate.series(now)
    expect(tokens.at(-1)).toBe(150)
    expect(errors.at(-1)).toBe(1)
  })

  it('merges agent frames and notices agents it does not know', () => {
    const h = hub()
    h.receive([ev('text_chunk', {}, { agent_id: 'new-agent' })])
    expect(h.unknownAgents).toBe(1)
    h.receiveAgent({ id: 'a1', status: 'online', last_event_at: null } as never)
    h.receive([ev('text_chunk', {}, { agent_id: 'a1' })])
    expect(h.agents.get('a1')?.last_event_at).not.toBeNull()
  })

  it('keeps requests from frames and tells views once per frame', () => {
    const h = hub()
    let renders = 0
    h.subscribe(() => (renders += 1))
    const base = {
      id: 'r_1', kind: 'permission' as const, agent_id: 'a1', session_id: 's1', key: 'c1', status: 'pending' as const,
      stage: 'pending' as const, created_at: '2026-11-25T14:00:00.000Z', expires_at: null, request: {}, response: null,
      decided_by: null, decided_at: null, delivered_at: null, acknowledged_at: null, agent_response: null, event_cursor: 1,
    }
    h.receiveRequest(base)
    h.receiveRequest({ ...base, status: 'decided', stage: 'delivered', decided_by: 'bob' })
    vi.advanceTimersByTime(250)
    expect(renders).toBe(1)
    expect(h.requests.get('r_1')?.decided_by).toBe('bob')
    expect(h.requests.openCount(Date.parse('2026-11-25T14:00:01Z'))).toBe(0)
  })

  describe('after a reconnect', () => {
    function item(e: StudioEvent) {
      return { cursor: e.cursor, timestamp: e.timestamp, agent_id: e.agent_id, session_id: e.session_id, channel: e.channel, event_type: e.type, event: e.data }
    }

    function serve(newest: StudioEvent | null, atOurs: StudioEvent | null) {
      const fetchMock = vi.fn(async (url: string) => {
        const at = url.includes('/events/since/')
        const e = at ? atOurs : newest
        return new Response(JSON.stringify({ success: true, data: { events: e ? [item(e)] : [] } }), { status: 200 })
      })
      vi.stubGlobal('fetch', fetchMock)
      return fetchMock
    }

    afterEach(() => {
      vi.unstubAllGlobals()
    })

    function watched() {
      const h = hub()
      const seen = [ev('text_chunk'), ev('text_chunk'), ev('text_chunk')]
      h.receive(seen)
      h.stream.seedCursor(3)
      return { h, last: seen[2] }
    }

    it('starts over when the Studio came back with fewer events', async () => {
      const { h } = watched()
      resetCursor(0)
      serve(ev('text_chunk'), null)
      await h.checkStoreReset()
      expect(h.storeResets).toBe(1)
      expect(h.stream.lastCursor).toBe(0)
    })

    it('starts over when the event at its cursor is another one (a bigger new database)', async () => {
      const { h, last } = watched()
      resetCursor(10)
      const newest = ev('text_chunk')
      serve(newest, { ...last, timestamp: '2030-01-01T00:00:00.000Z', type: 'state_changed' })
      await h.checkStoreReset()
      expect(h.storeResets).toBe(1)
    })

    it('notices a replaced store for events a view loaded from history only', async () => {
      const h = hub()
      h.noteSeen([ev('text_chunk'), ev('text_chunk')])
      resetCursor(0)
      serve(null, null)
      await h.checkStoreReset()
      expect(h.storeResets).toBe(1)
    })

    it('keeps its cursor when the Studio still holds the events it saw', async () => {
      const { h, last } = watched()
      const newest = ev('text_chunk')
      serve(newest, last)
      await h.checkStoreReset()
      expect(h.storeResets).toBe(0)
      expect(h.stream.lastCursor).toBe(3)
    })
  })
})
