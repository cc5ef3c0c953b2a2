/**
 * Follow one session (or one agent) live: replay its stored events, then keep folding in live
 * events from the hub. Live events that arrive while history loads are held back and applied
 * after it; the transcript drops anything at or below its last cursor, so none shows twice.
 * When the hub sees the Studio's store replaced (`storeResets`), the view is rebuilt from scratch.
 */
import { useEffect, useRef, useState, useSyncExternalStore } from 'react'
import { normalizeEvent, request } from './api'
import { useHub } from './hooks'
import { Transcript } from './transcript'
import type { EventsPage, StudioEvent } from './types'

export interface TranscriptTarget {
  sessionId?: string | null
  agentId?: string | null
}

export interface TranscriptState {
  transcript: Transcript
  revision: number
  loading: boolean
  error: string | null
  /** History was longer than the console loads; the start is missing. */
  truncated: boolean
}

const PAGE = 1000
const MAX_PAGES = 50

export async function loadHistory(
  target: TranscriptTarget,
  signal: AbortSignal,
  maxPages = MAX_PAGES,
): Promise<{ events: StudioEvent[]; truncated: boolean }> {
  if (target.sessionId) {
    // Newest first, page by page back to the start or the limit: past it, what is left out
    // is the oldest part (the newest was: the end of a long session, its answer, went missing).
    const newest: StudioEvent[] = []
    let before: number | null = null
    for (let page = 0; page < maxPages; page += 1) {
      const query: Record<string, string | number> = { session_id: target.sessionId, limit: PAGE }
      if (before !== null) query.before = before
      const data = await request<EventsPage>('/events', { query, signal })
      newest.push(...(data.events ?? []).map(normalizeEvent))
      const next = data.next_before ?? null
      if (next === null || (before !== null && next >= before)) return { events: newest.reverse(), truncated: false }
      before = next
    }
    return { events: newest.reverse(), truncated: true }
  }
  // A whole agent's history can be huge: the newest page is enough for its live view.
  const data = await request<EventsPage>('/events', { query: { agent_id: target.agentId ?? '', limit: PAGE }, signal })
  const events = (data.events ?? []).map(normalizeEvent).reverse()
  return { events, truncated: events.length >= PAGE }
}

export function useTranscript(target: TranscriptTarget): TranscriptState {
  const hub = useHub()
  const key = target.sessionId ? `s:${target.sessionId}` : target.agentId ? `a:${target.agentId}` : ''
  // A Studio that came back with another database numbers its events from 1 again: the old
  // transcript would drop them all as already seen, so the view starts over from history.
  const resets = useSyncExternalStore(hub.subscribe, () => hub.storeResets)
  const [state, setState] = useState<TranscriptState>(() => ({
    transcript: new Transcript(),
    revision: 0,
    loading: Boolean(key),
    error: null,
    truncated: false,
  }))
  const current = useRef(state)
  current.current = state

  useEffect(() => {
    const transcript = new Transcript()
    const initial = { transcript, revision: 0, loading: Boolean(key), error: null, truncated: false }
    setState(initial)
    if (!key) return
    const matches = (e: StudioEvent) =>
      target.sessionId ? e.session_id === target.sessionId : e.agent_id === target.agentId
    let held: StudioEvent[] | null = []
    const unsubscribe = hub.onEvents((batch) => {
      const mine = batch.filter(matches)
      if (mine.length === 0) return
      if (held) {
        held.push(...mine)
        return
      }
      if (transcript.applyAll(mine)) {
        setState((s) => (s.transcript === transcript ? { ...s, revision: transcript.revision } : s))
      }
    })
    const controller = new AbortController()
    loadHistory(target, controller.signal)
      .then(({ events, truncated }) => {
        hub.noteSeen(events)
        transcript.applyAll(events)
        transcript.applyAll(held ?? [])
        held = null
        setState({ transcript, revision: transcript.revision, loading: false, error: null, truncated })
      })
      .catch((err: unknown) => {
        if (controller.signal.aborted) return
        transcript.applyAll(held ?? [])
        held = null
        setState({
          transcript,
          revision: transcript.revision,
          loading: false,
          error: err instanceof Error ? err.message : String(err),
          truncated: false,
        })
      })
    return () => {
      controller.abort()
      unsubscribe()
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [hub, key, resets])

  return state
}
