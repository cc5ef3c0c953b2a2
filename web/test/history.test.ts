import { afterEach, describe, expect, it, vi } from 'vitest'
import { loadHistory } from '../src/lib/useTranscript'

afterEach(() => {
  vi.unstubAllGlobals()
})

/** A Studio holding one session of `total` events: `/events` pages of 1,000, newest first. */
function serveSession(total: number) {
  const fetchMock = vi.fn(async (url: string) => {
    const query = new URL(url, 'http://studio').searchParams
    const before = Number(query.get('before') ?? total + 1)
    const limit = Number(query.get('limit'))
    const cursors: number[] = []
    for (let c = before - 1; c >= 1 && cursors.length < limit; c -= 1) cursors.push(c)
    const events = cursors.map((cursor) => ({
      cursor, timestamp: '2026-11-25T10:00:00.000Z', agent_id: 'a', session_id: 's', channel: 'progress',
      event_type: 'text_chunk', event: { delta: `${cursor} ` },
    }))
    const nextBefore = cursors.length === limit && cursors.at(-1)! > 1 ? cursors.at(-1)! : null
    return new Response(JSON.stringify({ success: true, data: { events, next_before: nextBefore } }), { status: 200 })
  })
  vi.stubGlobal('fetch', fetchMock)
  return fetchMock
}

describe('loadHistory', () => {
  it('keeps the newest part of a session longer than it loads, oldest first', async () => {
    serveSession(3_500)
    const { events, truncated } = await loadHistory({ sessionId: 's' }, new AbortController().signal, 2)
    expect(truncated).toBe(true)
    expect(events.map((e) => e.cursor)).toEqual(Array.from({ length: 2_000 }, (_, i) => 1_501 + i))
  })

  it('loads a shorter session whole', async () => {
    serveSession(1_500)
    const { events, truncated } = await loadHistory({ sessionId: 's' }, new AbortController().signal, 2)
    expect(truncated).toBe(false)
    expect(events.map((e) => e.cursor)).toEqual(Array.from({ length: 1_500 }, (_, i) => 1 + i))
  })
})
