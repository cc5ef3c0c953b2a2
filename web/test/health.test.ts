import { describe, expect, it } from 'vitest'
import { healthFacts, type Healthz } from '../src/lib/health'

const alone: Healthz = {
  status: 'ok',
  version: '0.1.0',
  uptime_s: 3725.4,
  store: { backend: 'sqlite:////data/studio.db', id: 'abc', status: 'healthy', latency_ms: 0.42 },
  write_queue: 12,
  agents_online: 3,
}

function fact(h: Healthz, label: string): [string, boolean] | undefined {
  const found = healthFacts(h).find(([l]) => l === label)
  return found ? [found[1], found[2]] : undefined
}

describe('healthFacts', () => {
  it('lists a Studio alone, its store healthy', () => {
    expect(fact(alone, 'storage')).toEqual(['sqlite:////data/studio.db', false])
    expect(fact(alone, 'storage health')).toEqual(['healthy (0.4 ms)', false])
    expect(fact(alone, 'up for')).toEqual(['1h 02m', false])
    expect(fact(alone, 'cluster')).toEqual(['none: this Studio runs alone', false])
    expect(fact(alone, 'other Studios')).toBeUndefined()
  })

  it('flags a store it cannot reach, with the reason', () => {
    const down: Healthz = {
      ...alone,
      status: 'degraded',
      store: { backend: 'postgresql://db/aster', id: 'abc', status: 'unhealthy', error: 'since 12:00:01' },
    }
    expect(fact(down, 'storage health')).toEqual(['unhealthy: since 12:00:01', true])
  })

  it("lists a cluster's Studios, and flags a Redis it cannot reach", () => {
    const cluster = {
      instance: 'host-a:41:9f3c2e',
      redis: 'redis://redis:6379/0',
      connected: true,
      peers: ['host-b:17:0a1b2c'],
      held_runs: 0,
      published_events: 1200,
      received_events: 3400,
      filled_events: 5,
      dropped_messages: 0,
    }
    const member: Healthz = { ...alone, cluster }
    expect(fact(member, 'other Studios')).toEqual(['host-b:17:0a1b2c', false])
    expect(fact(member, 'Redis')).toEqual(['redis://redis:6379/0 · connected', false])
    expect(fact(member, 'cluster')).toBeUndefined()
    const cut: Healthz = { ...alone, cluster: { ...cluster, connected: false, peers: [] } }
    expect(fact(cut, 'Redis')?.[1]).toBe(true)
    expect(fact(cut, 'other Studios')).toEqual(['none heard from in the last 5 s', false])
  })
})
