/** Derived facts about agents for tables and counters. */
import type { AgentView } from './types'

export type AgentBucket = 'working' | 'stalled' | 'waiting' | 'online' | 'offline'

const BUSY = new Set(['working', 'running'])

export function bucketOf(agent: AgentView): AgentBucket {
  if (agent.status !== 'online') return 'offline'
  // Silent while a person has its request in front of them: waiting for them, not stuck.
  if (agent.stalled) return agent.waiting ? 'waiting' : 'stalled'
  if (agent.state && BUSY.has(agent.state)) return 'working'
  return 'online'
}

export interface AgentCounts {
  online: number
  working: number
  stalled: number
  /** Stalled agents with a request waiting for a person's decision (not in `stalled`). */
  waiting: number
  offline: number
  total: number
}

/** Online counts every connected agent (working and stalled ones included). */
export function countAgents(agents: Iterable<AgentView>): AgentCounts {
  const counts = { online: 0, working: 0, stalled: 0, waiting: 0, offline: 0, total: 0 }
  for (const agent of agents) {
    counts.total += 1
    const bucket = bucketOf(agent)
    if (bucket === 'offline') counts.offline += 1
    else counts.online += 1
    if (bucket === 'working') counts.working += 1
    if (bucket === 'stalled') counts.stalled += 1
    if (bucket === 'waiting') counts.waiting += 1
  }
  return counts
}

/** Mark the agents whose requests wait for a person (ids of open requests' agents). */
export function markWaiting(agents: Iterable<AgentView>, waitingFor: Iterable<{ agent_id: string }>): AgentView[] {
  const ids = new Set<string>()
  for (const r of waitingFor) ids.add(r.agent_id)
  const out: AgentView[] = []
  for (const agent of agents) out.push(ids.has(agent.id) ? { ...agent, waiting: true } : agent)
  return out
}

export function displayName(agent: Pick<AgentView, 'id' | 'name'>): string {
  return agent.name || agent.id
}

/** Milliseconds the agent has been connected, or null when offline. */
export function uptimeMs(agent: AgentView, now: number): number | null {
  if (agent.status !== 'online' || !agent.connected_at) return null
  const since = Date.parse(agent.connected_at)
  return Number.isFinite(since) ? Math.max(0, now - since) : null
}

type SortKey = 'status' | 'name' | 'state' | 'model' | 'session' | 'tokens' | 'cost' | 'last_event' | 'uptime' | 'errors'

const BUCKET_ORDER: Record<AgentBucket, number> = { working: 0, stalled: 1, waiting: 2, online: 3, offline: 4 }

function sortValue(agent: AgentView, key: SortKey, now: number): string | number {
  switch (key) {
    case 'status':
      return BUCKET_ORDER[bucketOf(agent)]
    case 'name':
      return displayName(agent).toLowerCase()
    case 'state':
      return agent.state ?? ''
    case 'model':
      return agent.model ?? ''
    case 'session':
      return agent.current_session_id ?? ''
    case 'tokens':
      return agent.token_usage?.total ?? 0
    case 'cost':
      return agent.cost?.amount ?? 0
    case 'last_event':
      return agent.last_event_at ? Date.parse(agent.last_event_at) : 0
    case 'uptime':
      return uptimeMs(agent, now) ?? -1
    case 'errors':
      return agent.error_count ?? 0
  }
}

export function sortAgents(agents: AgentView[], key: string, dir: 'asc' | 'desc', now: number): AgentView[] {
  const k = key as SortKey
  const sign = dir === 'asc' ? 1 : -1
  return [...agents].sort((a, b) => {
    const va = sortValue(a, k, now)
    const vb = sortValue(b, k, now)
    if (va < vb) return -sign
    if (va > vb) return sign
    return displayName(a).localeCompare(displayName(b))
  })
}

export function filterAgents(agents: AgentView[], text: string, bucket: string): AgentView[] {
  const needle = text.trim().toLowerCase()
  return agents.filter((agent) => {
    if (bucket && bucket !== 'all') {
      const b = bucketOf(agent)
      if (bucket === 'online' ? b === 'offline' : b !== bucket) return false
    }
    if (!needle) return true
    return [agent.id, agent.name, agent.model, agent.state, agent.current_session_id]
      .filter(Boolean)
      .some((v) => String(v).toLowerCase().includes(needle))
  })
}
