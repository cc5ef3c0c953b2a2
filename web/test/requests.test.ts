import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../src/lib/api'
import {
  answerLines,
  countdown,
  emptyDrafts,
  isOpen,
  questionsOf,
  refusalOf,
  RequestStore,
  setOther,
  shapeAnswers,
  shownStage,
  syncRequests,
  toggleOption,
  toolActions,
  type RequestView,
} from '../src/lib/requests'

const T0 = Date.parse('2026-11-25T14:00:00.000Z')

function view(patch: Partial<RequestView> = {}): RequestView {
  return {
    id: 'r_1',
    kind: 'permission',
    agent_id: 'a1',
    session_id: 's1',
    key: 'call_1',
    status: 'pending',
    stage: 'pending',
    created_at: new Date(T0).toISOString(),
    expires_at: null,
    request: { id: 'call_1', name: 'write_file', arguments: { path: 'x' } },
    response: null,
    decided_by: null,
    decided_at: null,
    delivered_at: null,
    acknowledged_at: null,
    agent_response: null,
    event_cursor: 7,
    ...patch,
  }
}

const decided = (patch: Partial<RequestView> = {}) =>
  view({ status: 'decided', stage: 'delivered', decided_by: 'alice', decided_at: new Date(T0 + 1000).toISOString(), ...patch })

describe('RequestStore', () => {
  it('counts pending requests and drops them from the count once decided', () => {
    const store = new RequestStore()
    store.upsert(view())
    store.upsert(view({ id: 'r_2', key: 'call_2' }))
    expect(store.openCount(T0)).toBe(2)
    store.upsert(decided())
    expect(store.openCount(T0)).toBe(1)
    expect(store.open(T0).map((v) => v.id)).toEqual(['r_2'])
  })

  it('never moves a request back to an earlier stage (a late snapshot after a frame)', () => {
    const store = new RequestStore()
    store.upsert(decided({ stage: 'acknowledged', acknowledged_at: new Date(T0 + 2000).toISOString() }))
    expect(store.upsert(view())).toBe(false)
    expect(store.upsert(decided({ stage: 'delivered' }))).toBe(false)
    expect(store.get('r_1')?.stage).toBe('acknowledged')
  })

  it('ignores an identical view without bumping its version', () => {
    const store = new RequestStore()
    store.upsert(view())
    const version = store.version
    expect(store.upsert(view())).toBe(false)
    expect(store.version).toBe(version)
  })

  it('does not count a pending request past its deadline, before the Studio says it expired', () => {
    const store = new RequestStore()
    store.upsert(view({ expires_at: new Date(T0 + 5000).toISOString() }))
    expect(store.openCount(T0 + 4999)).toBe(1)
    expect(store.openCount(T0 + 5000)).toBe(0)
    expect(shownStage(store.get('r_1')!, T0 + 5000)).toBe('expired')
  })

  it('names pending requests missing from a snapshot that did not change since it began', () => {
    const store = new RequestStore()
    store.upsert(view({ id: 'old' }), T0)
    store.upsert(view({ id: 'fresh' }), T0 + 500)
    store.upsert(view({ id: 'listed' }), T0)
    const stale = store.applyPendingSnapshot([view({ id: 'listed' })], T0 + 100, T0 + 200)
    expect(stale).toEqual(['old'])
  })

  it('finds the request an event created by its cursor, else the newest for the key', () => {
    const store = new RequestStore()
    store.upsert(decided({ id: 'first', event_cursor: 3, created_at: new Date(T0).toISOString() }))
    store.upsert(view({ id: 'second', event_cursor: 9, created_at: new Date(T0 + 10).toISOString() }))
    expect(store.forEvent('a1', 'permission', 'call_1', 3)?.id).toBe('first')
    expect(store.forEvent('a1', 'permission', 'call_1', 12)?.id).toBe('second')
    expect(store.forEvent('a2', 'permission', 'call_1')).toBeUndefined()
  })

  it('keeps every pending request but only the newest closed ones', () => {
    const store = new RequestStore()
    store.upsert(view({ id: 'waiting', created_at: new Date(T0 - 1e6).toISOString() }))
    for (let i = 0; i < 520; i += 1) {
      store.upsert(decided({ id: `d${i}`, key: `k${i}`, created_at: new Date(T0 + i).toISOString() }))
    }
    expect(store.get('waiting')).toBeDefined()
    expect(store.get('d0')).toBeUndefined()
    expect(store.get('d519')).toBeDefined()
    expect(store.size).toBe(501)
  })

  it('lists tool controls of one call, oldest first', () => {
    const store = new RequestStore()
    const control = (id: string, at: number, action: string) =>
      view({ id, kind: 'tool_control', key: 'c9', status: 'decided', stage: 'delivered', created_at: new Date(T0 + at).toISOString(), request: { call_id: 'c9', action } })
    store.upsert(control('t2', 20, 'resume'))
    store.upsert(control('t1', 10, 'pause'))
    store.upsert(view({ id: 'other', kind: 'tool_control', key: 'c8', status: 'decided', stage: 'delivered' }))
    expect(store.controlsFor('a1', 'c9').map((v) => v.id)).toEqual(['t1', 't2'])
  })
})

describe('countdown', () => {
  it('counts down in seconds, then minutes, and says expired at the deadline', () => {
    const v = view({ expires_at: new Date(T0 + 125_000).toISOString() })
    expect(countdown(v, T0).text).toBe('expires in 2:05')
    expect(countdown(v, T0 + 80_500).text).toBe('expires in 45 s')
    expect(countdown(v, T0 + 125_000)).toMatchObject({ state: 'expired', text: 'expired' })
    expect(countdown(view({ expires_at: new Date(T0 + 7_300_000).toISOString() }), T0).text).toBe('expires in 2h 01m')
  })

  it('shows nothing without a deadline or once decided, and expired for expired requests', () => {
    expect(countdown(view(), T0).state).toBe('none')
    expect(countdown(decided({ expires_at: new Date(T0 + 5000).toISOString() }), T0).state).toBe('none')
    expect(countdown(view({ status: 'expired', stage: 'expired' }), T0).text).toBe('expired')
  })

  it('treats only pending requests within their deadline as open', () => {
    expect(isOpen(view(), T0)).toBe(true)
    expect(isOpen(decided(), T0)).toBe(false)
    expect(isOpen(view({ expires_at: new Date(T0).toISOString() }), T0)).toBe(false)
  })
})

describe('answer forms', () => {
  const questions = questionsOf([
    { question: 'Which file?', header: 'File', multi_select: false, options: [{ label: 'a.txt', description: 'first' }, { label: 'b.txt' }] },
    { question: 'Which checks?', multi_select: true, options: ['lint', { label: 'test' }, { label: 'e2e' }] },
    { question: 'Anything else?' },
  ])

  it('reads questions of odd shapes: string options, missing fields, junk entries', () => {
    expect(questions).toHaveLength(3)
    expect(questions[0]).toEqual({
      question: 'Which file?',
      header: 'File',
      multiSelect: false,
      options: [
        { label: 'a.txt', description: 'first' },
        { label: 'b.txt', description: '' },
      ],
    })
    expect(questions[1].options.map((o) => o.label)).toEqual(['lint', 'test', 'e2e'])
    expect(questions[2]).toMatchObject({ options: [], multiSelect: false })
    expect(questionsOf('nope')).toEqual([])
    expect(questionsOf([null, 3, 'Plain question?'])).toEqual([{ question: 'Plain question?', header: '', options: [], multiSelect: false }])
  })

  it('shapes single choice as a string, multiple choice as a list in offered order, free text as a string', () => {
    const drafts = emptyDrafts(questions)
    drafts[0] = toggleOption(questions[0], drafts[0], 'a.txt')
    drafts[0] = toggleOption(questions[0], drafts[0], 'b.txt')
    drafts[1] = toggleOption(questions[1], drafts[1], 'e2e')
    drafts[1] = toggleOption(questions[1], drafts[1], 'lint')
    drafts[1] = toggleOption(questions[1], drafts[1], 'test')
    drafts[1] = toggleOption(questions[1], drafts[1], 'test')
    drafts[2] = setOther(questions[2], drafts[2], '  be careful  ')
    expect(shapeAnswers(questions, drafts)).toEqual({
      ok: true,
      answers: { 'Which file?': 'b.txt', 'Which checks?': ['lint', 'e2e'], 'Anything else?': 'be careful' },
    })
  })

  it('lets "Other" text replace a single choice and join a multiple choice', () => {
    const drafts = emptyDrafts(questions)
    drafts[0] = setOther(questions[0], toggleOption(questions[0], drafts[0], 'a.txt'), 'c.txt')
    expect(drafts[0]).toEqual({ selected: [], other: 'c.txt' })
    drafts[1] = setOther(questions[1], toggleOption(questions[1], drafts[1], 'lint'), 'fuzz')
    drafts[2] = setOther(questions[2], drafts[2], 'no')
    const shaped = shapeAnswers(questions, drafts)
    expect(shaped).toEqual({ ok: true, answers: { 'Which file?': 'c.txt', 'Which checks?': ['lint', 'fuzz'], 'Anything else?': 'no' } })
  })

  it('names the unanswered questions instead of sending', () => {
    const drafts = emptyDrafts(questions)
    drafts[1] = toggleOption(questions[1], drafts[1], 'lint')
    drafts[2] = setOther(questions[2], drafts[2], '   ')
    expect(shapeAnswers(questions, drafts)).toEqual({ ok: false, missing: [0, 2] })
  })

  it('lists the answers of a decided request as text', () => {
    expect(answerLines({ answers: { 'Which file?': 'a.txt', 'Which checks?': ['lint', 'e2e'] } })).toEqual([
      { question: 'Which file?', answer: 'a.txt' },
      { question: 'Which checks?', answer: 'lint, e2e' },
    ])
    expect(answerLines(null)).toEqual([])
  })
})

describe('refusals', () => {
  it('reads who decided first from a 409 conflict', () => {
    const error = new ApiError(409, 'conflict', 'already decided', { decided_by: 'bob', decided_at: '2026-11-25T14:00:01.000Z' })
    expect(refusalOf(error)).toEqual({ kind: 'conflict', message: 'already decided', decidedBy: 'bob', decidedAt: '2026-11-25T14:00:01.000Z' })
  })

  it('tells expired, gone and other failures apart', () => {
    expect(refusalOf(new ApiError(410, 'expired', 'expired at x')).kind).toBe('expired')
    expect(refusalOf(new ApiError(404, 'not_found', 'no request')).kind).toBe('gone')
    expect(refusalOf(new ApiError(400, 'bad_request', 'bad'))).toEqual({ kind: 'error', message: 'bad' })
    expect(refusalOf(new Error('offline')).message).toBe('offline')
  })
})

describe('tool actions', () => {
  const tool = { state: 'executing', pausable: true, cancelable: true, paused: false }

  it('offers what the call says it supports while it runs', () => {
    expect(toolActions(tool)).toEqual(['pause', 'cancel'])
    expect(toolActions({ ...tool, paused: true })).toEqual(['resume', 'cancel'])
    expect(toolActions({ ...tool, pausable: false })).toEqual(['cancel'])
    expect(toolActions({ ...tool, cancelable: false, pausable: false })).toEqual([])
  })

  it('offers nothing once the call ended, and no second cancel while canceling', () => {
    expect(toolActions({ ...tool, state: 'completed' })).toEqual([])
    expect(toolActions({ ...tool, state: 'canceled' })).toEqual([])
    expect(toolActions({ ...tool, state: 'canceling' })).toEqual(['pause'])
  })
})

describe('syncRequests', () => {
  afterEach(() => vi.unstubAllGlobals())

  function respond(routes: Record<string, unknown>) {
    const fetch = vi.fn(async (url: string) => {
      const path = url.replace('/v1/dashboard', '')
      const key = Object.keys(routes).find((k) => path.startsWith(k))
      if (key === undefined) return new Response(JSON.stringify({ success: false, error: { code: 'not_found', message: 'no' } }), { status: 404 })
      return new Response(JSON.stringify({ success: true, data: routes[key] }), { status: 200 })
    })
    vi.stubGlobal('fetch', fetch)
    return fetch
  }

  it('fills the store and re-reads pending requests the snapshot no longer lists', async () => {
    const store = new RequestStore()
    store.upsert(view({ id: 'gone-by' }), 0)
    store.upsert(view({ id: 'vanished' }), 0)
    respond({
      '/requests?status=pending': { requests: [view({ id: 'new-one' })], pending: 1 },
      '/requests?status=all': { requests: [view({ id: 'new-one' })], pending: 1 },
      '/requests/gone-by': decided({ id: 'gone-by' }),
    })
    const hub = { requests: store, changed: vi.fn() }
    await syncRequests(hub)
    expect(store.get('new-one')?.status).toBe('pending')
    expect(store.get('gone-by')?.status).toBe('decided')
    expect(store.get('vanished')).toBeUndefined()
    expect(hub.changed).toHaveBeenCalled()
  })
})
