import { describe, expect, it } from 'vitest'
import { bucketOf, countAgents, filterAgents, markWaiting, sortAgents, uptimeMs } from '../src/lib/agents'
import type { AgentView } from '../src/lib/types'

function agent(id: string, patch: Partial<AgentView> = {}): AgentView {
  return {
    id,
    name: id,
    model: 'gpt-4o',
    capabilities: [],
    metadata: {},
    status: 'online',
    state: 'idle',
    stalled: false,
    current_session_id: null,
    registered_at: null,
    connected_at: '2026-11-25T10:00:00.000Z',
    last_seen: null,
    last_event_at: null,
    token_usage: { input: 0, output: 0, total: 0 },
    cost: { amount: 0, currency: 'USD' },
    unpriced_tokens: 0,
    event_count: 0,
    error_count: 0,
    ...patch,
  }
}

const fleet = [
  agent('a', { state: 'working', token_usage: { input: 1, output: 1, total: 2 } }),
  agent('b', { state: 'working', stalled: true, token_usage: { input: 5, output: 5, total: 10 } }),
  agent('c', { status: 'offline', model: 'claude-sonnet-4' }),
  agent('d', { state: 'idle', name: 'Writer' }),
]

describe('agents', () => {
  it('puts each agent in one bucket and counts working and stalled as online', () => {
    expect(fleet.map(bucketOf)).toEqual(['working', 'stalled', 'offline', 'online'])
    expect(countAgents(fleet)).toEqual({ online: 3, working: 1, stalled: 1, waiting: 0, offline: 1, total: 4 })
  })

  it('filters by text over id, name and model, and by bucket', () => {
    expect(filterAgents(fleet, 'writer', 'all').map((a) => a.id)).toEqual(['d'])
    expect(filterAgents(fleet, 'claude', 'all').map((a) => a.id)).toEqual(['c'])
    expect(filterAgents(fleet, '', 'online').map((a) => a.id)).toEqual(['a', 'b', 'd'])
    expect(filterAgents(fleet, '', 'stalled').map((a) => a.id)).toEqual(['b'])
  })

  it('sorts by any column in either direction', () => {
    const now = Date.parse('2026-11-25T11:00:00.000Z')
    expect(sortAgents(fleet, 'tokens', 'desc', now).map((a) => a.id).slice(0, 2)).toEqual(['b', 'a'])
    expect(sortAgents(fleet, 'status', 'asc', now).map((a) => a.id)).toEqual(['a', 'b', 'd', 'c'])
    expect(sortAgents(fleet, 'name', 'desc', now)[0].id).toBe('d')
  })

  it('measures uptime only while online', () => {
    const now = Date.parse('2026-11-25T11:00:00.000Z')
    expect(uptimeMs(fleet[0], now)).toBe(3600_000)
    expect(uptimeMs(fleet[2], now)).toBeNull()
  })
})

describe('agents waiting for a person', () => {
  it('reads a stalled agent with an open request as waiting for you, not stalled', () => {
    const agents = markWaiting(
      [agent('asks', { state: 'working', stalled: true }), agent('stuck', { state: 'working', stalled: true })],
      [{ agent_id: 'asks' }],
    )
    expect(agents.map(bucketOf)).toEqual(['waiting', 'stalled'])
    expect(countAgents(agents)).toMatchObject({ online: 2, stalled: 1, waiting: 1 })
    expect(filterAgents(agents, '', 'waiting').map((a) => a.id)).toEqual(['asks'])
  })

  it('leaves an agent that is not stalled as it is', () => {
    const [a] = markWaiting([agent('busy', { state: 'working' })], [{ agent_id: 'busy' }])
    expect(bucketOf(a)).toBe('working')
  })
})
