import { useState } from 'react'
import { useNavigate, useSearchParams } from 'react-router'
import { AgentLink, AgentState, AgentStatus, ConnectHelp, Card, PageHeader, Segmented, SessionLink } from '../components/common'
import { VirtualTable, type Column } from '../components/VirtualTable'
import { countAgents, displayName, filterAgents, markWaiting, sortAgents, uptimeMs } from '../lib/agents'
import { formatCostOf, formatCount, formatDuration, formatRelative } from '../lib/format'
import { useLive, useNow } from '../lib/hooks'
import { agentPath } from '../lib/routes'
import type { AgentView } from '../lib/types'

const BUCKETS = ['all', 'online', 'working', 'stalled', 'waiting', 'offline'] as const
type Bucket = (typeof BUCKETS)[number]

export function AgentsPage() {
  const hub = useLive()
  const now = useNow(1000)
  const navigate = useNavigate()
  const [params, setParams] = useSearchParams()
  const [text, setText] = useState(params.get('q') ?? '')
  const bucket = (params.get('status') as Bucket) || 'all'
  const [sort, setSort] = useState<{ key: string; dir: 'asc' | 'desc' }>({ key: 'status', dir: 'asc' })

  // An agent silent while its request waits in the inbox reads as waiting for you, not stalled.
  const all = markWaiting(hub.agents.values(), hub.requests.open(now))
  const counts = countAgents(all)
  const rows = sortAgents(filterAgents(all, text, bucket), sort.key, sort.dir, now)

  const columns: Column<AgentView>[] = [
    { key: 'status', header: 'Status', width: '128px', sortable: true, render: (a) => <AgentStatus agent={a} /> },
    {
      key: 'name',
      header: 'Agent',
      width: 'minmax(140px, 2fr)',
      sortable: true,
      render: (a) => (
        <span className="cell-stack">
          <AgentLink id={a.id} name={displayName(a)} />
          {a.name && a.name !== a.id && <span className="muted mono tiny">{a.id}</span>}
        </span>
      ),
    },
    { key: 'state', header: 'State', width: '100px', sortable: true, render: (a) => <AgentState agent={a} /> },
    { key: 'model', header: 'Model', width: 'minmax(110px, 1.2fr)', sortable: true, render: (a) => <span className="mono small">{a.model ?? '–'}</span> },
    { key: 'session', header: 'Session', width: 'minmax(100px, 1fr)', sortable: true, render: (a) => <SessionLink id={a.current_session_id} /> },
    { key: 'tokens', header: 'Tokens', width: '70px', sortable: true, align: 'right', render: (a) => <span className="num">{formatCount(a.token_usage?.total ?? 0)}</span> },
    {
      key: 'cost',
      header: 'Cost',
      width: '80px',
      sortable: true,
      align: 'right',
      render: (a) => (
        <span className="num" title={a.unpriced_tokens ? `${a.unpriced_tokens} tokens have no price` : undefined}>
          {formatCostOf(a.cost)}
        </span>
      ),
    },
    { key: 'errors', header: 'Errors', width: '56px', sortable: true, align: 'right', render: (a) => <span className={`num ${a.error_count ? 'text-bad' : 'muted'}`}>{a.error_count ?? 0}</span> },
    { key: 'last_event', header: 'Last event', width: '90px', sortable: true, align: 'right', render: (a) => <span className="muted" title={a.last_event_at ?? ''}>{formatRelative(a.last_event_at, now)}</span> },
    { key: 'uptime', header: 'Uptime', width: '80px', sortable: true, align: 'right', render: (a) => <span className="muted num">{formatDuration(uptimeMs(a, now))}</span> },
  ]

  const setBucket = (b: Bucket) => {
    const next = new URLSearchParams(params)
    if (b === 'all') next.delete('status')
    else next.set('status', b)
    setParams(next, { replace: true })
  }

  return (
    <div className="page" data-testid="page-agents">
      <PageHeader
        title="Agents"
        subtitle={`${counts.online} online · ${counts.working} working · ${counts.stalled} stalled${counts.waiting ? ` · ${counts.waiting} waiting for you` : ''} · ${counts.offline} offline`}
      />
      {all.length === 0 ? (
        <Card>
          <ConnectHelp />
        </Card>
      ) : (
        <Card
          title={
            <div className="toolbar">
              <input
                className="input"
                placeholder="Filter by name, id, model, state…"
                value={text}
                onChange={(e) => setText(e.target.value)}
                data-testid="agent-filter"
              />
              <Segmented value={bucket} options={BUCKETS} onChange={setBucket} testId="agent-bucket" />
            </div>
          }
          actions={<span className="muted small">{rows.length} shown</span>}
        >
          <VirtualTable
            testId="agents-table"
            count={rows.length}
            getRow={(i) => rows[i]}
            rowKey={(a) => a.id}
            columns={columns}
            rowHeight={46}
            height="calc(100vh - 230px)"
            sort={sort}
            onSort={(key) =>
              setSort((s) => ({ key, dir: s.key === key ? (s.dir === 'asc' ? 'desc' : 'asc') : key === 'name' || key === 'status' ? 'asc' : 'desc' }))
            }
            onRowClick={(a) => navigate(agentPath(a.id))}
            rowClass={(a) => (a.status === 'online' && a.stalled ? 'row-warn' : a.status !== 'online' ? 'row-dim' : '')}
            empty="No agent matches the filter."
          />
        </Card>
      )}
    </div>
  )
}
