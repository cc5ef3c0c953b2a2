import { useMemo, useState } from 'react'
import { AgentLink, Card, Empty, ErrorNote, PageHeader, Segmented, Stat } from '../components/common'
import { Chart } from '../components/Chart'
import { formatCost, formatCostOf, formatCostTicks, formatCount, formatDuration, formatPercent, formatTokenSplit, truncate } from '../lib/format'
import { useApi, useHub } from '../lib/hooks'
import { PERIODS, type CostAmount, type CostStats, type PerformanceStats, type Period, type TokenCount, type TokenStats } from '../lib/types'

function Breakdown({
  title,
  tokens,
  costs,
  kind,
}: {
  title: string
  tokens: Record<string, TokenCount> | undefined
  costs: Record<string, CostAmount> | undefined
  kind: 'model' | 'agent'
}) {
  const keys = [...new Set([...Object.keys(tokens ?? {}), ...Object.keys(costs ?? {})])]
  keys.sort((a, b) => (tokens?.[b]?.total ?? 0) - (tokens?.[a]?.total ?? 0))
  const max = Math.max(1, ...keys.map((k) => tokens?.[k]?.total ?? 0))
  return (
    <Card title={title} testId={`by-${kind}`}>
      {keys.length === 0 ? (
        <Empty>Nothing in this period.</Empty>
      ) : (
        <table className="table compact">
          <thead>
            <tr>
              <th>{kind === 'model' ? 'Model' : 'Agent'}</th>
              <th className="right">Input</th>
              <th className="right">Output</th>
              <th className="right">Total</th>
              <th className="bar-col" />
              <th className="right">Cost</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => {
              const t = tokens?.[k]
              const c = costs?.[k]
              return (
                <tr key={k}>
                  <td className="name-cell">
                    {/* A long id is cut with an ellipsis (whole in the tooltip): the numbers stay in the card. */}
                    <span className="ellipsis" title={k}>
                      {kind === 'agent' ? <AgentLink id={k} /> : <span className="mono small">{k}</span>}
                    </span>
                  </td>
                  <td className="right num">{formatCount(t?.input ?? 0)}</td>
                  <td className="right num">{formatCount(t?.output ?? 0)}</td>
                  <td className="right num">{formatCount(t?.total ?? 0)}</td>
                  <td className="bar-col">
                    <span className="hbar" style={{ width: `${((t?.total ?? 0) / max) * 100}%` }} />
                  </td>
                  <td className="right num">{formatCostOf(c)}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      )}
    </Card>
  )
}

export function MetricsPage() {
  const hub = useHub()
  const [period, setPeriod] = useState<Period>('24h')
  const [agent, setAgent] = useState('')
  const query = { period, agent_id: agent || undefined }
  const tokens = useApi<TokenStats>('/metrics/tokens', query, 10_000)
  const costs = useApi<CostStats>('/metrics/costs', query, 10_000)
  const perf = useApi<PerformanceStats>('/metrics/performance', query, 10_000)
  // A Studio that counts (ours) says when no step was reported; zeros are not a latency.
  const noSteps = perf.data?.ttft.count === 0

  const tokenTrend = useMemo(() => {
    const t = tokens.data?.trend ?? []
    return [t.map((p) => Date.parse(p.timestamp) / 1000), t.map((p) => p.input), t.map((p) => p.output)] as [number[], number[], number[]]
  }, [tokens.data])
  const costTrend = useMemo(() => {
    const t = costs.data?.trend ?? []
    return [t.map((p) => Date.parse(p.timestamp) / 1000), t.map((p) => p.amount)] as [number[], number[]]
  }, [costs.data])
  const span = { '1h': 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 }[period]
  const nowS = Math.floor(Date.now() / 1000)
  const xRange: [number, number] = [nowS - span, nowS]
  const toolLatency = Object.entries(perf.data?.tool_latency ?? {}).sort((a, b) => b[1].p95 - a[1].p95)

  return (
    <div className="page" data-testid="page-metrics">
      <PageHeader
        title="Metrics"
        subtitle="Tokens, cost and latency by model and agent"
        actions={
          <span className="toolbar">
            <select className="input select" value={agent} onChange={(e) => setAgent(e.target.value)} data-testid="metrics-agent">
              <option value="">All agents</option>
              {[...hub.agents.values()].map((a) => (
                <option key={a.id} value={a.id}>
                  {truncate(a.name || a.id, 48)}
                </option>
              ))}
            </select>
            <Segmented value={period} options={PERIODS} onChange={setPeriod} testId="metrics-period" />
          </span>
        }
      />
      <ErrorNote error={tokens.error ?? costs.error ?? perf.error} />
      <div className="stats-grid">
        <Stat label="Tokens" value={formatCount(tokens.data?.total.total ?? 0)} hint={formatTokenSplit(tokens.data?.total)} testId="metrics-tokens" />
        <Stat label="Cost" value={formatCostOf(costs.data?.total)} testId="metrics-cost" />
        <Stat label="Requests" value={formatCount(perf.data?.request_count ?? 0)} />
        <Stat label="Errors" value={formatCount(perf.data?.error_count ?? 0)} hint={formatPercent(perf.data?.error_rate ?? 0)} tone={(perf.data?.error_rate ?? 0) > 0.05 ? 'bad' : undefined} />
        {noSteps ? (
          <>
            <Stat label="Step latency p95" value="–" hint="no steps reported" testId="metrics-step-latency" />
            <Stat label="Avg. steps per run" value="–" />
          </>
        ) : (
          <>
            <Stat label="Step latency p95" value={formatDuration(perf.data?.ttft.p95 ?? 0)} hint={`p50 ${formatDuration(perf.data?.ttft.p50 ?? 0)}`} testId="metrics-step-latency" />
            <Stat label="Avg. steps per run" value={(perf.data?.avg_loop_count ?? 0).toFixed(1)} />
          </>
        )}
      </div>
      <div className="grid-2">
        <Card title="Tokens over time" testId="chart-metrics-tokens">
          {tokenTrend[0].length === 0 ? (
            <Empty>No token usage in this period.</Empty>
          ) : (
            <Chart
              data={tokenTrend}
              series={[
                { label: 'input', color: '#38bdf8', bars: true, format: formatCount },
                { label: 'output', color: '#34d399', bars: true, format: formatCount },
              ]}
              height={220}
              xRange={xRange}
              yFormat={formatCount}
            />
          )}
        </Card>
        <Card title="Cost over time" testId="chart-metrics-cost">
          {costTrend[0].length === 0 ? (
            <Empty>No cost in this period.</Empty>
          ) : (
            <Chart data={costTrend} series={[{ label: 'cost', color: '#fbbf24', bars: true, format: (v) => formatCost(v) }]} height={220} xRange={xRange} yTicks={formatCostTicks} />
          )}
        </Card>
      </div>
      <div className="grid-2">
        <Breakdown title="By model" tokens={tokens.data?.by_model} costs={costs.data?.by_model} kind="model" />
        <Breakdown title="By agent" tokens={tokens.data?.by_agent} costs={costs.data?.by_agent} kind="agent" />
      </div>
      <Card title="Tool latency">
        {toolLatency.length === 0 ? (
          <Empty>No tool calls in this period.</Empty>
        ) : (
          <table className="table compact">
            <thead>
              <tr>
                <th>Tool</th>
                <th className="right">p50</th>
                <th className="right">p95</th>
                <th className="right">p99</th>
                <th className="right">avg</th>
                <th className="right">max</th>
              </tr>
            </thead>
            <tbody>
              {toolLatency.map(([name, p]) => (
                <tr key={name}>
                  <td className="mono small">{name}</td>
                  <td className="right num">{formatDuration(p.p50)}</td>
                  <td className="right num">{formatDuration(p.p95)}</td>
                  <td className="right num">{formatDuration(p.p99)}</td>
                  <td className="right num">{formatDuration(p.avg)}</td>
                  <td className="right num">{formatDuration(p.max)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
    </div>
  )
}
