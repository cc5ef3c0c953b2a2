/**
 * Requests of agents to people, and the means to answer them: approve or deny a tool call,
 * answer questions, pause, resume or cancel a running tool call. Shared by the inbox and the
 * session views; drafts (notes, half-filled answers) are kept per request across both and across
 * virtualized rows leaving the DOM. Everything an agent sent is rendered as text.
 */
import { useState, useSyncExternalStore } from 'react'
import { formatClock, formatDuration } from '../lib/format'
import { useHub, useNow } from '../lib/hooks'
import {
  ageMs,
  answer,
  answerLines,
  controlTool,
  countdown,
  decide,
  emptyDrafts,
  isOpen,
  questionsOf,
  refusalOf,
  setOther,
  shapeAnswers,
  shownStage,
  toggleOption,
  toolActions,
  type AnswerDraft,
  type Question,
  type Refusal,
  type RequestView,
  type ToolAction,
} from '../lib/requests'
import { request as apiRequest } from '../lib/api'
import type { ToolCall } from '../lib/transcript'
import { AgentLink, Badge, SessionLink } from './common'
import { JsonView } from './JsonView'

// ---- drafts shared by every view of a request ----

interface Draft {
  note: string
  answers: AnswerDraft[] | null
  busy: boolean
  refusal: Refusal | null
  /** When this tab last sent a decision for it (ms), so the inbox can show how it went. */
  actedAt: number | null
}

/** How long a request this tab decided stays in the inbox's pending list, showing its outcome. */
export const KEEP_DECIDED_MS = 8_000

const drafts = new Map<string, Draft>()
const draftListeners = new Set<() => void>()
let draftVersion = 0

function getDraft(id: string): Draft {
  return drafts.get(id) ?? { note: '', answers: null, busy: false, refusal: null, actedAt: null }
}

/**
 * Whether the inbox keeps a closed request in its pending list: this tab just decided it (the
 * outcome shows for a few seconds) or was refused (shown until dismissed: someone else won).
 */
export function keepInInbox(id: string, now: number): boolean {
  const draft = drafts.get(id)
  if (!draft) return false
  return draft.refusal !== null || draft.busy || (draft.actedAt !== null && now - draft.actedAt < KEEP_DECIDED_MS)
}

function patchDraft(id: string, patch: Partial<Draft>): void {
  drafts.set(id, { ...getDraft(id), ...patch })
  // Bounded: drafts of requests long gone are not worth keeping.
  if (drafts.size > 500) drafts.delete(drafts.keys().next().value as string)
  draftVersion += 1
  for (const listener of draftListeners) listener()
}

function subscribeDrafts(listener: () => void): () => void {
  draftListeners.add(listener)
  return () => draftListeners.delete(listener)
}

function getDraftVersion(): number {
  return draftVersion
}

function useDraft(id: string): [Draft, (patch: Partial<Draft>) => void] {
  useSyncExternalStore(subscribeDrafts, getDraftVersion)
  return [getDraft(id), (patch) => patchDraft(id, patch)]
}

// ---- pieces ----

const KIND_LABEL: Record<string, string> = {
  permission: 'permission',
  question: 'question',
  tool_control: 'tool control',
}

const STAGE_TONE: Record<string, string> = {
  pending: 'warn',
  decided: 'info',
  delivered: 'info',
  acknowledged: 'good',
  expired: 'bad',
}

export function StageBadge({ view, now }: { view: RequestView; now: number }) {
  const stage = shownStage(view, now)
  return (
    <span data-testid="request-stage" data-stage={stage}>
      <Badge value={stage} tone={STAGE_TONE[stage]} />
    </span>
  )
}

export function Expiry({ view, now }: { view: RequestView; now: number }) {
  const c = countdown(view, now)
  if (c.state === 'none') return null
  const urgent = c.state === 'running' && (c.remainingMs ?? 0) < 15_000
  return (
    <span
      className={`req-expiry ${c.state} ${urgent ? 'urgent' : ''}`}
      data-testid="request-expiry"
      data-state={c.state}
      title={view.expires_at ? `deadline ${formatClock(view.expires_at)}` : undefined}
    >
      {c.text}
    </span>
  )
}

function ageText(view: RequestView, now: number): string {
  const age = ageMs(view, now)
  return age < 1000 ? 'just now' : `${formatDuration(age)} ago`
}

function clock(value: string | null): string {
  return value ? formatClock(value) : '–'
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : JSON.stringify(value)
}

/** Who decided, when, and how far the decision got. */
export function Outcome({ view }: { view: RequestView }) {
  const response = view.response ?? {}
  let verdict: string
  if (view.kind === 'permission') verdict = str(response.decision) === 'allow' ? 'Allowed' : str(response.decision) === 'deny' ? 'Denied' : 'Decided'
  else if (view.kind === 'question') verdict = 'Answered'
  else verdict = `${str(response.action) || 'control'} sent`
  const agentResponse = view.agent_response ?? null
  return (
    <div className="req-outcome" data-testid="request-outcome">
      {view.status === 'expired' && !view.decided_at ? (
        <span>
          <b>Expired</b>
          {view.expires_at ? ` at ${clock(view.expires_at)}` : ''} without a decision
        </span>
      ) : (
        <span>
          <b data-testid="request-verdict">{verdict}</b> by <b data-testid="request-decided-by">{view.decided_by ?? '–'}</b> at {clock(view.decided_at)}
        </span>
      )}
      {typeof response.note === 'string' && response.note && (
        <span className="req-note">
          note: <q>{response.note}</q>
        </span>
      )}
      {view.decided_at && (
        <span className="req-steps">
          <span className={view.delivered_at ? 'done' : 'todo'} data-testid="request-delivered">
            {view.delivered_at ? `delivered ${clock(view.delivered_at)}` : view.status === 'expired' ? 'not delivered' : 'waiting for the agent to connect'}
          </span>
          <span className={view.acknowledged_at ? 'done' : 'todo'} data-testid="request-acknowledged">
            {view.acknowledged_at ? `acknowledged ${clock(view.acknowledged_at)}` : 'not acknowledged yet'}
          </span>
        </span>
      )}
      {view.kind !== 'tool_control' && agentResponse?.applied === false && (
        <span className="req-late" data-testid="request-late">
          too late for the agent: it had already gone on with
          {agentResponse.decision != null ? ` ${str(agentResponse.decision)}` : ' its default'}
          {agentResponse.reason != null ? ` (${str(agentResponse.reason)})` : ''}
        </span>
      )}
      {view.kind === 'tool_control' && agentResponse && (
        <span className="req-agent-response" data-testid="request-agent-response">
          agent: {agentResponse.ok === true ? 'ok' : 'refused'}
          {agentResponse.reason != null ? ` · ${str(agentResponse.reason)}` : ''}
        </span>
      )}
    </div>
  )
}

function RefusalNote({ refusal, onDismiss }: { refusal: Refusal; onDismiss?: () => void }) {
  let text: string
  if (refusal.kind === 'conflict' && refusal.decidedBy) {
    text = `Someone else decided first: ${refusal.decidedBy}${refusal.decidedAt ? ` at ${clock(refusal.decidedAt)}` : ''}. Your decision was not sent.`
  } else if (refusal.kind === 'expired') {
    text = `Too late: this request expired. ${refusal.message}`
  } else if (refusal.kind === 'gone') {
    text = `This request is no longer open. ${refusal.message}`
  } else {
    text = `Could not send: ${refusal.message}`
  }
  return (
    <div className={`req-refusal ${refusal.kind}`} role="alert" data-testid="request-refusal" data-kind={refusal.kind}>
      {text}
      {onDismiss && (
        <button type="button" className="linklike small req-dismiss" onClick={onDismiss} data-testid="refusal-dismiss">
          Dismiss
        </button>
      )}
    </div>
  )
}

function PermissionAsk({ view }: { view: RequestView }) {
  const call = view.request ?? {}
  return (
    <div className="req-ask">
      <div>
        wants to run <b className="mono" data-testid="request-tool">{str(call.name) || str(call.id) || view.key}</b>
        <span className="muted small mono"> {view.key}</span>
      </div>
      {call.arguments !== undefined && (
        <div className="json-box" data-testid="request-args">
          <JsonView value={call.arguments} />
        </div>
      )}
    </div>
  )
}

function QuestionsAsked({ view }: { view: RequestView }) {
  const questions = questionsOf(view.request?.questions)
  const answered = new Map(answerLines(view.response).map((a) => [a.question, a.answer]))
  return (
    <ol className="req-questions">
      {questions.map((q, i) => (
        <li key={i}>
          {q.header && <span className="req-q-header">{q.header}</span>}
          <span className="req-q-text">{q.question}</span>
          {q.options.length > 0 && (
            <span className="muted small"> ({q.options.map((o) => o.label).join(' / ')})</span>
          )}
          {answered.has(q.question) && (
            <div className="req-answer" data-testid="request-answer">
              → {answered.get(q.question)}
            </div>
          )}
        </li>
      ))}
    </ol>
  )
}

function QuestionField({
  question,
  index,
  draft,
  missing,
  name,
  onChange,
}: {
  question: Question
  index: number
  draft: AnswerDraft
  missing: boolean
  name: string
  onChange: (draft: AnswerDraft) => void
}) {
  const hasOptions = question.options.length > 0
  return (
    <fieldset className={`req-field ${missing ? 'missing' : ''}`} data-testid="question-field">
      <legend>
        {question.header && <span className="req-q-header">{question.header}</span>}
        <span className="req-q-text">{question.question || `Question ${index + 1}`}</span>
        {question.multiSelect && <span className="muted small"> (choose any)</span>}
      </legend>
      {question.options.map((option) => (
        <label key={option.label} className="req-option">
          <input
            type={question.multiSelect ? 'checkbox' : 'radio'}
            name={name}
            checked={draft.selected.includes(option.label)}
            onChange={() => onChange(toggleOption(question, draft, option.label))}
          />
          <span className="req-option-label">{option.label}</span>
          {option.description && <span className="muted small"> — {option.description}</span>}
        </label>
      ))}
      {hasOptions ? (
        <input
          className="input req-other"
          placeholder="Other…"
          value={draft.other}
          onChange={(e) => onChange(setOther(question, draft, e.target.value))}
          data-testid="question-other"
        />
      ) : (
        <textarea
          className="input req-free"
          rows={2}
          placeholder="Your answer"
          value={draft.other}
          onChange={(e) => onChange(setOther(question, draft, e.target.value))}
          data-testid="question-text"
        />
      )}
    </fieldset>
  )
}

function QuestionForm({ view, onSubmit, busy }: { view: RequestView; onSubmit: (answers: Record<string, string | string[]>) => void; busy: boolean }) {
  const [draft, patch] = useDraft(view.id)
  const [missing, setMissing] = useState<number[]>([])
  const questions = questionsOf(view.request?.questions)
  const answers = draft.answers && draft.answers.length === questions.length ? draft.answers : emptyDrafts(questions)
  return (
    <form
      className="req-form"
      data-testid="question-form"
      onSubmit={(e) => {
        e.preventDefault()
        const shaped = shapeAnswers(questions, answers)
        if (!shaped.ok) {
          setMissing(shaped.missing)
          return
        }
        setMissing([])
        onSubmit(shaped.answers)
      }}
    >
      {questions.length === 0 && <div className="muted small">The agent sent no questions.</div>}
      {questions.map((q, i) => (
        <QuestionField
          key={i}
          question={q}
          index={i}
          draft={answers[i]}
          missing={missing.includes(i)}
          name={`${view.id}-q${i}`}
          onChange={(next) => {
            const copy = [...answers]
            copy[i] = next
            patch({ answers: copy })
            if (missing.includes(i)) setMissing(missing.filter((m) => m !== i))
          }}
        />
      ))}
      {missing.length > 0 && <div className="req-refusal">Answer every question first.</div>}
      <div className="req-actions">
        <button type="submit" className="btn btn-primary" disabled={busy || questions.length === 0} data-testid="answer-submit">
          Send answers
        </button>
      </div>
    </form>
  )
}

/**
 * One request with what is asked, its age and deadline, and (while open) the means to answer;
 * once decided, who decided, when, and whether the agent got and acknowledged it.
 */
function useSettle(view: RequestView): [Draft, (patch: Partial<Draft>) => void, (promise: Promise<RequestView>) => void] {
  const hub = useHub()
  const [draft, patch] = useDraft(view.id)
  const settle = (promise: Promise<RequestView>) => {
    patch({ busy: true, refusal: null, actedAt: Date.now() })
    promise
      .then((updated) => {
        hub.receiveRequest(updated)
        patch({ busy: false, refusal: null, actedAt: Date.now() })
      })
      .catch((error: unknown) => {
        const refusal = refusalOf(error)
        patch({ busy: false, refusal })
        // Learn what happened instead (the winning decision, the expiry).
        if (refusal.kind !== 'error') {
          apiRequest<RequestView>(`/requests/${encodeURIComponent(view.id)}`)
            .then((fresh) => hub.receiveRequest(fresh))
            .catch(() => undefined)
        }
      })
  }
  return [draft, patch, settle]
}

export function RequestCard({ view, showContext = true, testId = 'request' }: { view: RequestView; showContext?: boolean; testId?: string }) {
  const hub = useHub()
  const now = useNow(1000)
  const [draft, patch, settle] = useSettle(view)
  const open = isOpen(view, now)
  const stage = shownStage(view, now)
  return (
    <div
      className={`req-card kind-${view.kind} stage-${stage} ${view.response?.decision === 'deny' ? 'verdict-deny' : ''}`}
      data-testid={testId}
      data-request-id={view.id}
      data-kind={view.kind}
      data-stage={stage}
    >
      <div className="req-head">
        <span className={`req-kind kind-${view.kind}`}>{KIND_LABEL[view.kind] ?? view.kind}</span>
        {showContext && (
          <span className="req-context">
            <AgentLink id={view.agent_id} name={hub.agents.get(view.agent_id)?.name} />
            {view.session_id && (
              <>
                <span className="muted"> · </span>
                <SessionLink id={view.session_id} />
              </>
            )}
          </span>
        )}
        <span className="muted small" title={view.created_at} data-testid="request-age">
          asked {ageText(view, now)}
        </span>
        <Expiry view={view} now={now} />
        <span className="right-push" />
        <StageBadge view={view} now={now} />
      </div>
      <div className="req-body">
        {view.kind === 'permission' && <PermissionAsk view={view} />}
        {view.kind === 'question' &&
          (open ? (
            <QuestionForm view={view} busy={draft.busy} onSubmit={(answers) => settle(answer(view.id, answers))} />
          ) : (
            <QuestionsAsked view={view} />
          ))}
        {view.kind === 'tool_control' && (
          <div className="req-ask">
            <b>{str(view.request?.action)}</b> tool call <span className="mono">{view.key}</span>
          </div>
        )}
      </div>
      {open && view.kind === 'permission' && (
        <div className="req-actions">
          <input
            className="input req-note-input"
            placeholder="Note to the agent (optional)"
            value={draft.note}
            maxLength={4000}
            onChange={(e) => patch({ note: e.target.value })}
            data-testid="decision-note"
          />
          <button type="button" className="btn btn-good" disabled={draft.busy} onClick={() => settle(decide(view.id, 'allow', draft.note))} data-testid="approve">
            Approve
          </button>
          <button type="button" className="btn btn-bad" disabled={draft.busy} onClick={() => settle(decide(view.id, 'deny', draft.note))} data-testid="deny">
            Deny
          </button>
        </div>
      )}
      {draft.refusal && <RefusalNote refusal={draft.refusal} onDismiss={() => patch({ refusal: null, actedAt: null })} />}
      {!open && <Outcome view={view} />}
    </div>
  )
}

/** One line per open request above a session's output, with Approve / Deny at hand. */
export function RequestLine({ view }: { view: RequestView }) {
  const now = useNow(1000)
  const [draft, , settle] = useSettle(view)
  const questions = view.kind === 'question' ? questionsOf(view.request?.questions) : []
  return (
    <div className="req-line" data-testid="request-line" data-request-id={view.id}>
      <span className={`req-kind kind-${view.kind}`}>{KIND_LABEL[view.kind] ?? view.kind}</span>
      {view.kind === 'permission' ? (
        <span>
          <b className="mono">{str(view.request?.name) || view.key}</b> waits for approval
        </span>
      ) : (
        <span>
          {questions.length} question{questions.length === 1 ? '' : 's'}: <i>{questions[0]?.question ?? ''}</i> — answer in the output below
        </span>
      )}
      <span className="muted small">asked {ageText(view, now)}</span>
      <Expiry view={view} now={now} />
      <span className="right-push" />
      {view.kind === 'permission' && isOpen(view, now) && (
        <>
          <button type="button" className="btn btn-small btn-good" disabled={draft.busy} onClick={() => settle(decide(view.id, 'allow', draft.note))} data-testid="line-approve">
            Approve
          </button>
          <button type="button" className="btn btn-small btn-bad" disabled={draft.busy} onClick={() => settle(decide(view.id, 'deny', draft.note))} data-testid="line-deny">
            Deny
          </button>
        </>
      )}
      {draft.refusal && <RefusalNote refusal={draft.refusal} />}
    </div>
  )
}

// ---- tool control ----

const ACTION_LABEL: Record<ToolAction, string> = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel' }

/** Pause / Resume / Cancel for a running tool call, with the agent's answers. */
export function ToolControls({ agentId, tool, compact = false }: { agentId: string; tool: ToolCall; compact?: boolean }) {
  const hub = useHub()
  const [busy, setBusy] = useState<ToolAction | null>(null)
  const [error, setError] = useState<string | null>(null)
  const actions = toolActions(tool)
  const send = (action: ToolAction) => {
    setBusy(action)
    setError(null)
    controlTool(agentId, tool.id, action)
      .then((view) => hub.receiveRequest(view))
      .catch((err: unknown) => setError(refusalOf(err).message))
      .finally(() => setBusy(null))
  }
  if (compact) {
    if (actions.length === 0) return null
    return (
      <span className="tool-controls compact" onClick={(e) => e.stopPropagation()}>
        {actions.map((action) => (
          <button
            key={action}
            type="button"
            className={`btn btn-tiny ${action === 'cancel' ? 'btn-bad' : ''}`}
            disabled={busy !== null}
            title={`${ACTION_LABEL[action]} this tool call`}
            onClick={() => send(action)}
            data-testid={`tool-${action}`}
          >
            {action === 'pause' ? '❚❚' : action === 'resume' ? '▶' : '✕'}
          </button>
        ))}
        {error && <span className="req-refusal inline" title={error}>!</span>}
      </span>
    )
  }
  const sent = hub.requests.controlsFor(agentId, tool.id)
  return (
    <div className="tool-controls" data-testid="tool-controls">
      {actions.length > 0 && (
        <div className="req-actions">
          {actions.map((action) => (
            <button
              key={action}
              type="button"
              className={`btn btn-small ${action === 'cancel' ? 'btn-bad' : ''}`}
              disabled={busy !== null}
              onClick={() => send(action)}
              data-testid={`tool-detail-${action}`}
            >
              {ACTION_LABEL[action]}
            </button>
          ))}
        </div>
      )}
      {error && (
        <div className="req-refusal" data-testid="tool-control-error">
          {error}
        </div>
      )}
      {(sent.length > 0 || tool.controls.length > 0) && (
        <ul className="tool-control-log" data-testid="tool-control-log">
          {sent.map((view) => (
            <li key={view.id}>
              <b>{str(view.request?.action)}</b> by {view.decided_by ?? '–'} at {clock(view.decided_at)} ·{' '}
              {view.delivered_at ? 'delivered' : 'not delivered'}
              {view.agent_response ? (
                <span data-testid="tool-control-response">
                  {' '}
                  · agent: {view.agent_response.ok === true ? 'ok' : 'refused'}
                  {view.agent_response.reason != null ? ` (${str(view.agent_response.reason)})` : ''}
                </span>
              ) : view.stage === 'expired' ? (
                <span className="muted" data-testid="tool-control-closed">
                  {' '}
                  · closed without an answer (replaced by a newer control, or out of time)
                </span>
              ) : (
                <span className="muted"> · no answer yet</span>
              )}
            </li>
          ))}
          {sent.length === 0 &&
            tool.controls.map((c, i) => (
              <li key={i} data-testid="tool-control-response">
                <b>{c.action}</b> · agent: {c.ok ? 'ok' : 'refused'}
                {c.reason ? ` (${c.reason})` : ''} at {formatClock(c.ts)}
              </li>
            ))}
        </ul>
      )}
    </div>
  )
}
