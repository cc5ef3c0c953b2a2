import { describe, expect, it } from 'vitest'
import { idFromSegment, idSegment, sessionPath } from '../src/lib/routes'

const IDS = ['plain', 'pct-%2F-slash', 'pct-%20-space', 'discount-100%', 'sess/one #a?b=%2F', '.', '..', '...', '~x', '~', '~.', 'é🙂']

describe('console route ids', () => {
  it('decodes every id back from its path segment exactly once', () => {
    for (const id of IDS) expect(idFromSegment(idSegment(id))).toBe(id)
  })

  it('never makes a segment a browser resolves as a dot segment', () => {
    for (const id of IDS) {
      const url = new URL(`http://h/studio${sessionPath(id)}`)
      expect(url.pathname).toBe(`/studio/sessions/${idSegment(id)}`)
    }
  })
})
