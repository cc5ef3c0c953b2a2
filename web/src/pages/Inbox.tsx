import { useEffect, useState } from 'react'
import { useSearchParams } from 'react-router'
import { AgentLink, Card, Empty, ErrorNote, PageHeader, Segmented } from '../components/common'
import { keepInInbox, RequestCard } from '../components/Requests'
import { compactJson, formatDateTime } from '../lib/format'
import { useApi, useNow, useRequestStore } from '../lib/hooks'
import { deciderName, isOpen, setDeciderName, type AuditEntry, type RequestView } from '../lib/requests'

const VIEWS = ['pending', 'decided', 'expired', 'all'] as const
type View = (typeof VIEWS)[number]
const KINDS = ['any kind', 'permission', 'question', 'tool_control'] as const
type Kind = (typeof KINDS)[number]

function matches(view: RequestView, which: View, now: number): boolean {
  switch (which) {
    case 'pending':
      return isOpen(view, now) || keepInInbox(view.id, now)
    case 'decided':
      return view.status === 'decided'
    case 'expired':
      return view.status === 'expired' || (view.status === 'pending' && !isOpen(view, now))
    default:
      return true
  }
}

/** The name decisions are signed with; kept in this browser. */
function DeciderField() {
  const [name, setName] = useState(deciderName)
  return (
    <label className="decider">
      <span className="muted small">Deciding as</span>
      <input
        className="input"
        placeholder="console"
        value={name}
        maxLength={256}
        onChange={(e) => {
          setName(e.target.value)
          setDeciderName(e.target.value)
        }}
        data-testid="decider-name"
      />
    </label>
  )
}

function AuditLog({ version }: { version: number }) {
  const audit = useApi<{ entries: AuditEntry[] }>('/audit', { limit: 100 }, 10_000)
  const { reload } = audit
  // A request changed: the log has a new row (debounced so a burst costs one request).
  useEffect(() => {
    const id = setTimeout(reload, 400)
    return () => clearTimeout(id)
  }, [version, reload])
  const entries = audit.data?.entries ?? []
  return (
    <Card title="Audit log" testId="audit-log" actions={<span className="muted small">newest first · every step of every request</span>}>
      <ErrorNote error={audit.error} />
      {entries.length === 0 ? (
        <Empty>No decisions yet.</Empty>
      ) : (
        <div className="table-scroll">
          <table className="table compact">
            <thead>
              <tr>
                <th>Time</th>
                <th>Action</th>
                <th>Actor</th>
                <th>Agent</th>
                <th>Request</th>
                <th>Detail</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => (
                <tr key={e.id} data-testid="audit-row" data-action={e.action}>
                  <td className="num nowrap">{formatDateTime(e.timestamp)}</td>
                  <td>
                    <span className={`audit-action a-${e.action}`}>{e.action}</span>
                  </td>
                  <td className="mono small">{e.actor}</td>
                  <td>{e.agent_id ? <AgentLink id={e.agent_id} /> : '–'}</td>
                  <td className="mono small">{e.request_id}</td>
                  <td className="mono small muted audit-detail">{e.detail && Object.keys(e.detail).length ? compactJson(e.detail, 160) : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Card>
  )
}

export function InboxPage() {
  const store = useRequestStore()
  const now = useNow(1000)
  const [params, setParams] = useSearchParams()
  const which = (VIEWS as readonly string[]).includes(params.get('view') ?? '') ? (params.get('view') as View) : 'pending'
  const kind = (KINDS as readonly string[]).includes(params.get('kind') ?? '') ? (params.get('kind') as Kind) : 'any kind'
  const set = (key: string, value: string, fallback: string) => {
    const next = new URLSearchParams(params)
    if (value === fallback) next.delete(key)
    else next.set(key, value)
    setParams(next, { replace: true })
  }
  const open = store.open(now)
  const all = which === 'pending' ? [...store.list()].reverse().filter((v) => matches(v, which, now)) : store.list().filter((v) => matches(v, which, now))
  const shown = kind === 'any kind' ? all : all.filter((v) => v.kind === kind)
  return (
    <div className="page" data-testid="page-inbox">
      <PageHeader
        title={
          <span className="title-row">
            Inbox
            <span className={`pill ${open.length ? 'warn' : ''}`} data-testid="inbox-pending">
              {open.length} waiting
            </span>
          </span>
        }
        subtitle="What agents are asking of people: tool calls to approve, questions to answer. Oldest first; a decision reaches the agent at once."
        actions={<DeciderField />}
      />
      <div className="toolbar">
        <Segmented value={which} options={VIEWS} onChange={(v) => set('view', v, 'pending')} testId="inbox-view" />
        <Segmented value={kind} options={KINDS} onChange={(v) => set('kind', v, 'any kind')} testId="inbox-kind" />
      </div>
      <div className="req-list" data-testid="inbox-list">
        {shown.length === 0 ? (
          <Empty>
            {which === 'pending'
              ? 'Nothing is waiting for you. Requests appear here the moment an agent asks.'
              : 'No requests here yet.'}
          </Empty>
        ) : (
          shown.slice(0, 200).map((view) => <RequestCard key={view.id} view={view} />)
        )}
      </div>
      <AuditLog version={store.version} />
    </div>
  )
}
