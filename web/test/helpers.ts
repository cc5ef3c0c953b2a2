import type { StudioEvent } from '../src/lib/types'

let cursor = 0

export function resetCursor(value = 0): void {
  cursor = value
}

export function ev(type: string, data: Record<string, unknown> = {}, extra: Partial<StudioEvent> = {}): StudioEvent {
  cursor += 1
  const ts = 1_764_000_000_000 + cursor * 10
  return {
    cursor,
    timestamp: new Date(ts).toISOString(),
    ts,
    agent_id: 'a1',
    session_id: 's1',
    channel: 'progress',
    type,
    data: { event_type: type, ...data },
    ...extra,
  }
}
