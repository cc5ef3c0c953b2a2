import { beforeEach, describe, expect, it } from 'vitest'
import { Transcript } from '../src/lib/transcript'
import { ev, resetCursor } from './helpers'

beforeEach(() => resetCursor())

describe('Transcript text assembly', () => {
  it('joins text chunks into one block as they arrive', () => {
    const t = new Transcript()
    t.applyAll([ev('text_chunk_start', { step: 1 }), ev('text_chunk', { step: 1, delta: 'Hel' })])
    expect(t.plainText()).toBe('Hel')
    t.apply(ev('text_chunk', { step: 1, delta: 'lo, world' }))
    expect(t.plainText()).toBe('Hello, world')
    expect(t.blocks).toHaveLength(1)
    expect(t.blocks[0]).toMatchObject({ kind: 'text', open: true })
  })

  it('closes the block on text_chunk_end and keeps the full text it carries', () => {
    const t = new Transcript()
    t.applyAll([ev('text_chunk', { step: 1, delta: 'lo' }), ev('text_chunk_end', { step: 1, text: 'Hello' })])
    expect(t.plainText()).toBe('Hello')
    expect(t.blocks[0]).toMatchObject({ open: false })
  })

  it('starts a new block for a new step', () => {
    const t = new Transcript()
    t.applyAll([
      ev('text_chunk', { step: 1, delta: 'one' }),
      ev('text_chunk_end', { step: 1, text: 'one' }),
      ev('text_chunk', { step: 2, delta: 'two' }),
    ])
    expect(t.blocks.map((b) => (b.kind === 'text' ? b.text : b.kind))).toEqual(['one', 'two'])
  })

  it('keeps thinking and text apart when they interleave', () => {
    const t = new Transcript()
    t.applyAll([
      ev('think_chunk_start', { step: 1 }),
      ev('think_chunk', { step: 1, delta: 'hmm ' }),
      ev('think_chunk', { step: 1, delta: 'ok' }),
      ev('think_chunk_end', { step: 1 }),
      ev('text_chunk', { step: 1, delta: 'Answer' }),
    ])
    expect(t.plainText()).toBe('[think] hmm ok\nAnswer')
  })

  it('treats chunks without a step as continuing the open block', () => {
    const t = new Transcript()
    t.applyAll([ev('text_chunk', { delta: 'a' }), ev('text_chunk', { delta: 'b' })])
    expect(t.plainText()).toBe('ab')
  })

  it('ignores events at or below the last applied cursor (history and live overlap)', () => {
    const t = new Transcript()
    const a = ev('text_chunk', { delta: 'x' })
    const b = ev('text_chunk', { delta: 'y' })
    t.applyAll([a, b])
    expect(t.applyAll([a, b])).toBe(false)
    expect(t.plainText()).toBe('xy')
  })

  it('reads the same replayed from storage as it did live', () => {
    const events = [
      ev('state_changed', { state: 'working' }, { channel: 'monitor' }),
      ev('text_chunk_start', { step: 1 }),
      ev('text_chunk', { step: 1, delta: 'Reading ' }),
      ev('tool:start', { call: { id: 'c1', name: 'read_file', arguments: { path: 'a' } } }),
      ev('tool:end', { call: { id: 'c1', name: 'read_file', state: 'completed', result: 'ok' } }),
      ev('text_chunk', { step: 1, delta: 'done' }),
      ev('done', { step: 1, reason: 'completed' }),
    ]
    const live = new Transcript()
    for (const e of events) live.apply(e)
    const replay = new Transcript()
    replay.applyAll(events)
    expect(replay.plainText()).toBe(live.plainText())
    expect(replay.blocks.map((b) => b.kind)).toEqual(live.blocks.map((b) => b.kind))
  })

  it('bounds memory by dropping the oldest blocks', () => {
    const t = new Transcript({ maxBlocks: 3 })
    for (let i = 0; i < 5; i += 1) t.apply(ev('state_changed', { state: `s${i}` }))
    expect(t.blocks).toHaveLength(3)
    expect(t.droppedBlocks).toBe(2)
  })

  it('keeps the newest text of a block over the limit and counts what it dropped', () => {
    const t = new Transcript({ maxTextPerBlock: 10 })
    t.apply(ev('text_chunk', { step: 1, delta: 'start-' }))
    for (let i = 0; i < 5; i += 1) t.apply(ev('text_chunk', { step: 1, delta: `${i}` }))
    t.apply(ev('text_chunk', { step: 1, delta: '-THE-END' }))
    const block = t.blocks[0] as { text: string; cut: number }
    expect(block.text.endsWith('-THE-END')).toBe(true)
    expect(block.text.length).toBeLessThanOrEqual(13)
    expect(block.cut + block.text.length).toBe('start-01234-THE-END'.length)
    expect(t.cutChars()).toBe(block.cut)
    expect(t.plainText()).toBe(`[… ${block.cut} earlier characters not kept] ${block.text}`)
  })

  it('keeps the end of the full text an end event carries', () => {
    const t = new Transcript({ maxTextPerBlock: 10 })
    t.applyAll([ev('text_chunk', { step: 1, delta: 'abc' }), ev('text_chunk_end', { step: 1, text: 'abcdefghij-FINAL' })])
    expect(t.blocks[0]).toMatchObject({ text: 'ghij-FINAL', cut: 6, open: false })
  })
})

describe('Transcript tool calls, state, errors, usage', () => {
  it('tracks a tool call from start to end with duration and result', () => {
    const t = new Transcript()
    t.apply(ev('tool:start', { call: { id: 'c1', name: 'grep', arguments: { q: 'x' }, state: 'executing' } }))
    t.apply(ev('tool:progress', { call: { id: 'c1' }, progress: 0.5, message: 'half' }))
    t.apply(ev('tool:end', { call: { id: 'c1', state: 'completed', result: { hits: 3 } } }))
    const [tool] = t.toolList()
    expect(tool).toMatchObject({ name: 'grep', state: 'completed', progress: 0.5, result: { hits: 3 } })
    expect(tool.endedTs! - tool.startedTs).toBe(20)
  })

  it('counts as errors only error events of no severity or above warning, as the Studio does', () => {
    const t = new Transcript()
    t.applyAll([
      ev('error', { severity: 'error', message: 'malformed JSON' }),
      ev('error', { severity: 'warn', message: 'rate limited' }),
      ev('error', { severity: 'INFO', message: 'fyi' }),
      ev('error', { message: 'no severity' }),
      ev('error', { severity: 'fatal', message: 'down' }),
    ])
    expect(t.errorCount).toBe(3)
    expect(t.minorErrorCount).toBe(2)
    expect(t.errors).toHaveLength(5)
  })

  it('marks a failed tool call with its error', () => {
    const t = new Transcript()
    t.apply(ev('tool:start', { call: { id: 'c2', name: 'fetch' } }))
    t.apply(ev('tool:error', { call: { id: 'c2' }, error: 'timeout' }))
    expect(t.toolList()[0]).toMatchObject({ state: 'failed', error: 'timeout' })
  })

  it('accepts the flattened tool shape (tool_id, tool_name)', () => {
    const t = new Transcript()
    t.apply(ev('tool:start', { tool_id: 't9', tool_name: 'ls', arguments: {} }))
    t.apply(ev('tool:end', { tool_id: 't9', state: 'completed', result: 'x' }))
    expect(t.toolList()[0]).toMatchObject({ id: 't9', name: 'ls', state: 'completed' })
  })

  it('records state changes and errors', () => {
    const t = new Transcript()
    t.apply(ev('state_changed', { state: 'working' }))
    t.apply(ev('error', { severity: 'error', phase: 'model', message: 'rate limited' }))
    expect(t.currentState).toBe('working')
    expect(t.errors[0]).toMatchObject({ severity: 'error', phase: 'model', message: 'rate limited' })
  })

  it('sums token usage per model, cumulatively over time', () => {
    const t = new Transcript()
    t.apply(ev('token_usage', { model: 'gpt-4o', input_tokens: 100, output_tokens: 20 }))
    t.apply(ev('token_usage', { model: 'gpt-4o', input_tokens: 50, output_tokens: 5, total_tokens: 55 }))
    t.apply(ev('token_usage', { input_tokens: 1, output_tokens: 1 }))
    const gpt = t.usage.get('gpt-4o')!
    expect(gpt).toMatchObject({ input: 150, output: 25, total: 175 })
    expect(gpt.points.map((p) => p[1])).toEqual([120, 175])
    expect(t.usage.get('unknown')!.total).toBe(2)
  })

  it('records an approval request and its decision', () => {
    const t = new Transcript()
    t.apply(ev('permission_required', { call: { id: 'c5', name: 'rm', arguments: { path: '/' } } }))
    t.apply(ev('permission_decided', { call_id: 'c5', decision: 'deny' }))
    expect(t.blocks[0]).toMatchObject({ kind: 'approval', callId: 'c5', decision: 'deny' })
  })

  it('reads call times in epoch milliseconds and a reported duration', () => {
    const t = new Transcript()
    t.apply(ev('tool:start', { call: { id: 'c7', name: 'slow', started_at: 1_764_000_000_000 } }))
    t.apply(ev('tool:end', { call: { id: 'c7', state: 'completed', started_at: 1_764_000_000_000, duration_ms: 1234.5 } }))
    expect(t.toolList()[0]).toMatchObject({ startedTs: 1_764_000_000_000, endedTs: 1_764_000_001_234.5 })
  })

  it('keeps the agent and event of an approval, for finding its request', () => {
    const t = new Transcript()
    t.apply(ev('permission_required', { call: { id: 'c5', name: 'rm' } }, { agent_id: 'agent-7' }))
    expect(t.blocks[0]).toMatchObject({ kind: 'approval', agentId: 'agent-7', cursor: 1 })
    expect(t.agentId).toBe('agent-7')
  })

  it('records questions asked and marks them answered on user_answer', () => {
    const t = new Transcript()
    const questions = [{ question: 'Which?', options: [{ label: 'a' }], multi_select: false }]
    t.apply(ev('ask_user', { request_id: 'q-1', questions }))
    expect(t.blocks[0]).toMatchObject({ kind: 'question', requestId: 'q-1', questions, answers: null })
    t.apply(ev('user_answer', { request_id: 'q-1', answers: { 'Which?': 'a' } }))
    expect(t.blocks[0]).toMatchObject({ answers: { 'Which?': 'a' } })
  })

  it('reads whether a call can be paused or canceled, and the agent answers to controls', () => {
    const t = new Transcript()
    t.apply(ev('tool:start', { call: { id: 'c9', name: 'slow', pausable: true, cancelable: true } }))
    expect(t.tools.get('c9')).toMatchObject({ pausable: true, cancelable: true, paused: false, agentId: 'a1' })
    t.apply(ev('tool_control_response', { call_id: 'c9', action: 'pause', ok: true }))
    expect(t.tools.get('c9')!.paused).toBe(true)
    t.apply(ev('tool_control_response', { call_id: 'c9', action: 'resume', ok: false, reason: 'busy' }))
    expect(t.tools.get('c9')!.paused).toBe(true)
    t.apply(ev('tool_control_response', { call_id: 'c9', action: 'cancel', ok: true }))
    expect(t.tools.get('c9')!.state).toBe('canceling')
    t.apply(ev('tool:canceled', { call: { id: 'c9' }, reason: 'user' }))
    expect(t.tools.get('c9')).toMatchObject({ state: 'canceled', paused: false })
    expect(t.tools.get('c9')!.controls.map((c) => [c.action, c.ok, c.reason])).toEqual([
      ['pause', true, null],
      ['resume', false, 'busy'],
      ['cancel', true, null],
    ])
  })

  it('ignores a control answer for a call it does not know', () => {
    const t = new Transcript()
    expect(t.apply(ev('tool_control_response', { call_id: 'nope', action: 'cancel', ok: true }))).toBe(true)
    expect(t.tools.size).toBe(0)
  })
})
