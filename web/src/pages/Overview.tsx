import { useMemo } from 'react'
import { Link } from 'react-router'
import { Chart } from '../components/Chart'
import { AgentLink, AgentStatus, Badge, Card, ConnectHelp, Empty, ErrorNote, PageHeader, Stat } from '../components/common'
import { countAgents, displayName, markWaiting, sortAgents } from '../lib/agents'
import { normalizeEvent } from '../lib/api'
import { isError } from '../lib/events'
import { countOf, formatClock, formatCost, formatCostOf, formatCostTicks, formatCount, formatPercent, formatRate, formatRelative, tokenCostTrend } from '../lib/format'
import { useApi, useLiveThrottled, useNow, useRequestStore } from '../lib/hooks'
import type { OverviewStats, StudioEvent, TokenStats, CostStats } from '../lib/types'

function ErrorsList({ errors, now }: { errors: StudioEvent[]; now: number }) {
  if (errors.length === 0) return <Empty>No errors. Nice.</Empty>
  return (
    <ul className="error-list" data-testid="latest-errors">
      {errors.map((e) => (
        <li key={e.cursor}>
          <div className="error-line">
            <Badge value={String(e.data.severity ?? 'error')} tone="bad" />
            <span className="error-msg">{String(e.data.message ?? e.data.error ?? e.type)}</span>
          </div>
          <div className="muted small">
            <AgentLink id={e.agent_id} /> · {e.data.phase ? `${String(e.data.phase)} · ` : ''}
            <span title={e.timestamp}>{formatRelative(e.ts, now)}</span>
          </div>
        </li>
      ))}
    </ul>
  )
}

export function OverviewPage() {
  const hub = useLiveThrottled(500)
  const now = useNow(1000)
  const day = useApi<OverviewStats>('/overview', { period: '24h' }, 5000)
  // The Studio answers both windows at once (`windows`); older servers need a second request.
  const needHour = day.data !== undefined && !day.data.windows?.['1h']
  const hourly = useApi<OverviewStats>(needHour ? '/overview' : null, { period: '1h' }, 5000)
  const hourWindow = day.data?.windows?.['1h']
  const hour = {
    data: hourWindow
      ? { token_usage: hourWindow.token_usage, cost: hourWindow.cost }
      : hourly.data && { token_usage: hourly.data.token_usage, cost: hourly.data.cost },
  }
  const tokens = useApi<TokenStats>('/metrics/tokens', { period: '24h' }, 5000)
  const costs = useApi<CostStats>('/metrics/costs', { period: '24h' }, 5000)

  const agents = markWaiting(hub.agents.values(), hub.requests.open(now))
  const live = countAgents(agents)
  const counts = agents.length > 0 ? live : day.data?.agents ?? live
  const liveRate = hub.eventRate.rate(now, 3)
  const connected = hub.connection.state === 'open'
  const eventsPerSecond = connected ? liveRate : day.data?.events_per_second ?? 0

  // The live charts cover the time this page has been open (30 s to 5 min).
  const liveWindow = Math.min(300, Math.max(30, Math.ceil((now - hub.startedAt) / 1000)))
  const [liveData, tokenData] = useMemo(() => {
    const [xs, evs] = hub.eventRate.series(now)
    const [, toks] = hub.tokenRate.series(now)
    const [, errs] = hub.errorRate.series(now)
    const from = xs.length - liveWindow
    return [
      [xs.slice(from), evs.slice(from)] as [number[], number[]],
      [xs.slice(from), toks.slice(from), errs.slice(from)] as [number[], number[], number[]],
    ]
  }, [now]) // eslint-disable-line react-hooks/exhaustive-deps
  const dayRange: [number, number] = [Math.floor(now / 1000) - 86400, Math.floor(now / 1000)]

  const trend = useMemo(() => tokenCostTrend(tokens.data?.trend ?? [], costs.data?.trend ?? []), [tokens.data, costs.data])

  // Latest errors: the stored ones, with live ones merged in as they arrive.
  const latestErrors = useMemo(() => {
    const byCursor = new Map<number, StudioEvent>()
    for (const item of day.data?.latest_errors ?? []) {
      const e = normalizeEvent(item)
      byCursor.set(e.cursor, e)
    }
    for (let i = 0; i < Math.min(hub.events.size, 5000); i += 1) {
      const e = hub.events.fromNewest(i)
      if (e && isError(e)) byCursor.set(e.cursor, e)
      if (byCursor.size > 40) break
    }
    return [...byCursor.values()].sort((a, b) => b.cursor - a.cursor).slice(0, 8)
  }, [day.data, hub.version]) // eslint-disable-line react-hooks/exhaustive-deps

  const busiest = sortAgents(agents, 'status', 'asc', now).slice(0, 8)
  const noAgents = agents.length === 0 && !day.loading && (day.data?.agents?.total ?? 0) === 0
  const errorRate = day.data?.error_rate ?? 0

  return (
    <div className="page" data-testid="page-overview">
      <PageHeader
        title="Overview"
        subtitle={
          day.data ? `Updated ${formatClock(day.data.updated_at, false)} · live stream ${connected ? 'on' : 'off'}` : 'Loading…'
        }
      />
      <ErrorNote error={day.error} />
      <WaitingBanner />
      <div className="stats-grid">
        <Stat label="Online" value={counts.online} hint={`of ${countOf(counts.total, 'agent')}`} tone="good" testId="stat-online" />
        <Stat label="Working" value={counts.working} tone="info" testId="stat-working" />
        <Stat
          label="Stalled"
          value={counts.stalled}
          tone={counts.stalled ? 'warn' : undefined}
          hint={live.waiting ? `${live.waiting} more waiting for you` : undefined}
          testId="stat-stalled"
        />
        <Stat label="Offline" value={counts.offline} testId="stat-offline" />
        <Stat
          label="Events / s"
          value={formatRate(eventsPerSecond)}
          hint={`${formatCount(day.data?.events_total ?? 0)} stored`}
          testId="stat-eps"
        />
        <Stat
          label="Tokens · 1h"
          value={formatCount(hour.data?.token_usage.total ?? 0)}
          hint={`${formatCount(day.data?.token_usage.total ?? 0)} in 24h`}
          testId="stat-tokens"
        />
        <Stat
          label="Cost · 1h"
          value={formatCostOf(hour.data?.cost)}
          hint={`${formatCostOf(day.data?.cost)} in 24h${
            day.data?.unpriced_tokens ? ` · ${countOf(day.data.unpriced_tokens, 'unpriced token')}` : ''
          }`}
          testId="stat-cost"
        />
        <Stat
          label="Error rate · 24h"
          value={formatPercent(errorRate)}
          hint={countOf(day.data?.error_count ?? 0, 'error')}
          tone={errorRate > 0.05 ? 'bad' : undefined}
          testId="stat-errors"
        />
      </div>

      {noAgents ? (
        <Card>
          <ConnectHelp />
        </Card>
      ) : null}

      <div className="grid-2">
        <Card title="Events per second" actions={<span className="muted small">live</span>} testId="chart-events">
          <Chart data={liveData} series={[{ label: 'events/s', color: '#38bdf8', fill: true }]} height={170} yFormat={formatCount} />
        </Card>
        <Card title="Tokens and errors per second" actions={<span className="muted small">live</span>} testId="chart-tokens-live">
          <Chart
            data={tokenData}
            series={[
              { label: 'tokens/s', color: '#a78bfa', fill: true },
              { label: 'errors/s', color: '#f87171', bars: true },
            ]}
            height={170}
            yFormat={formatCount}
          />
        </Card>
      </div>

      <div className="grid-2">
        <Card title="Tokens and cost · 24h" actions={<Link className="link small" to="/metrics">Metrics →</Link>} testId="chart-trend">
          {trend[0].length === 0 ? (
            <Empty>No token usage in the last 24 hours.</Empty>
          ) : (
            <Chart
              data={trend}
              series={[
                { label: 'input', color: '#38bdf8', bars: true, format: formatCount },
                { label: 'output', color: '#34d399', bars: true, format: formatCount },
                { label: 'cost', color: '#fbbf24', format: (v) => formatCost(v), ticks: formatCostTicks, right: true },
              ]}
              xRange={dayRange}
              height={190}
              yFormat={formatCount}
            />
          )}
        </Card>
        <Card title="Latest errors" actions={<Link className="link small" to="/events?mode=history&event_type=error">All →</Link>}>
          <ErrorsList errors={latestErrors} now={now} />
        </Card>
      </div>

      {busiest.length > 0 && (
        <Card title="Agents" actions={<Link className="link small" to="/agents">All agents →</Link>}>
          <table className="table compact">
            <thead>
              <tr>
                <th>Status</th>
                <th>Agent</th>
                <th>State</th>
                <th>Model</th>
                <th className="right">Tokens</th>
                <th className="right">Last event</th>
              </tr>
            </thead>
            <tbody>
              {busiest.map((a) => (
                <tr key={a.id}>
                  <td>
                    <AgentStatus agent={a} />
                  </td>
                  <td>
                    <AgentLink id={a.id} name={displayName(a)} />
                  </td>
                  <td>
                    <Badge value={a.state} />
                  </td>
                  <td className="mono small">{a.model ?? '–'}</td>
                  <td className="right num">{formatCount(a.token_usage?.total ?? 0)}</td>
                  <td className="right muted">{formatRelative(a.last_event_at, now)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      )}
    </div>
  )
}

/** Requests waiting for a person, with the way to the inbox. */
function WaitingBanner() {
  const requests = useRequestStore()
  const now = useNow(1000)
  const open = requests.open(now)
  if (open.length === 0) return null
  const agents = new Set(open.map((v) => v.agent_id)).size
  return (
    <Link to="/inbox" className="waiting-banner" data-testid="waiting-banner">
      <b>{open.length}</b> request{open.length === 1 ? '' : 's'} from {agents} agent{agents === 1 ? '' : 's'} waiting for a
      decision <span className="link">Open the inbox →</span>
    </Link>
  )
}
