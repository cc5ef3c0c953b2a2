import { useState } from 'react'
import { useNavigate, useSearchParams } from 'react-router'
import { AgentLink, Badge, Card, ConnectHelp, ErrorNote, PageHeader, Segmented, SessionLink } from '../components/common'
import { VirtualTable, type Column } from '../components/VirtualTable'
import { countOf, formatCostOf, formatCount, formatDuration, formatRelative } from '../lib/format'
import { useApi, useNow } from '../lib/hooks'
import { sessionPath } from '../lib/routes'
import type { SessionList, SessionSummary } from '../lib/types'

const STATUSES = ['all', 'active', 'completed', 'failed', 'interrupted', 'suspended'] as const
type Status = (typeof STATUSES)[number]
const PAGE = 200

export function SessionsPage() {
  const now = useNow(5000)
  const navigate = useNavigate()
  const [params, setParams] = useSearchParams()
  const status = (params.get('status') as Status) || 'all'
  const agentId = params.get('agent_id') ?? ''
  const [page, setPage] = useState(0)
  const list = useApi<SessionList>(
    '/sessions',
    { limit: PAGE, offset: page * PAGE, status: status === 'all' ? undefined : status, agent_id: agentId || undefined },
    5000,
  )
  const rows = list.data?.sessions ?? []
  const columns: Column<SessionSummary>[] = [
    { key: 'id', header: 'Session', width: 'minmax(140px, 1.5fr)', render: (s) => <SessionLink id={s.id} /> },
    { key: 'agent', header: 'Agent', width: 'minmax(120px, 1.3fr)', render: (s) => <AgentLink id={s.agent_id} name={s.agent_name} /> },
    { key: 'status', header: 'Status', width: '110px', render: (s) => <Badge value={s.status} /> },
    { key: 'events', header: 'Events', width: '80px', align: 'right', render: (s) => <span className="num">{formatCount(s.event_count ?? 0)}</span> },
    { key: 'tokens', header: 'Tokens', width: '90px', align: 'right', render: (s) => <span className="num">{formatCount(s.token_usage?.total ?? 0)}</span> },
    { key: 'cost', header: 'Cost', width: '90px', align: 'right', render: (s) => <span className="num">{formatCostOf(s.cost)}</span> },
    {
      key: 'duration',
      header: 'Duration',
      width: '90px',
      align: 'right',
      render: (s) => {
        const start = Date.parse(s.created_at)
        const end = s.ended_at ? Date.parse(s.ended_at) : s.status === 'active' ? now : Date.parse(s.updated_at)
        return <span className="num muted">{formatDuration(end - start)}</span>
      },
    },
    { key: 'updated', header: 'Updated', width: '100px', align: 'right', render: (s) => <span className="muted">{formatRelative(s.updated_at, now)}</span> },
  ]
  const setStatus = (s: Status) => {
    const next = new URLSearchParams(params)
    if (s === 'all') next.delete('status')
    else next.set('status', s)
    setParams(next, { replace: true })
    setPage(0)
  }
  const total = list.data?.total ?? 0
  return (
    <div className="page" data-testid="page-sessions">
      <PageHeader
        title="Sessions"
        subtitle={`${countOf(total, 'session')}${agentId ? ` of agent ${agentId}` : ''}`}
        actions={
          agentId ? (
            <button
              type="button"
              className="btn"
              onClick={() => {
                const next = new URLSearchParams(params)
                next.delete('agent_id')
                setParams(next, { replace: true })
              }}
            >
              Show all agents
            </button>
          ) : undefined
        }
      />
      <ErrorNote error={list.error} />
      {!list.loading && total === 0 && status === 'all' && !agentId ? (
        <Card>
          <ConnectHelp title="No sessions yet" />
        </Card>
      ) : (
        <Card
          title={<Segmented value={status} options={STATUSES} onChange={setStatus} testId="session-status" />}
          actions={
            <span className="toolbar">
              {page > 0 && (
                <button type="button" className="btn btn-small" onClick={() => setPage(page - 1)}>
                  ← Newer
                </button>
              )}
              <span className="muted small">
                {total ? `${page * PAGE + 1}–${Math.min(total, (page + 1) * PAGE)} of ${total}` : ''}
              </span>
              {list.data?.has_more && (
                <button type="button" className="btn btn-small" onClick={() => setPage(page + 1)}>
                  Older →
                </button>
              )}
            </span>
          }
        >
          <VirtualTable
            testId="sessions-table"
            count={rows.length}
            getRow={(i) => rows[i]}
            rowKey={(s) => s.id}
            columns={columns}
            rowHeight={40}
            height="calc(100vh - 230px)"
            onRowClick={(s) => navigate(sessionPath(s.id))}
            empty={list.loading ? 'Loading…' : 'No session matches.'}
          />
        </Card>
      )}
    </div>
  )
}
