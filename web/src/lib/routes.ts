/**
 * Ids in the console's own routes (`/agents/:id`, `/sessions/:id`): encoded exactly once.
 *
 * React Router decodes a path parameter and then turns every `%2F` in it into `/`, so an id that
 * itself holds the text `%2F` came out changed; and a browser resolves the segments `.` and `..`
 * (also written `%2E`) before any script sees them. So the id is read from the raw path and
 * decoded once, and an id of only dots gets a `~` in front (as does an id starting with `~`, so
 * that every id has one path and every path one id).
 */
import { useLocation } from 'react-router'

export function idSegment(id: string): string {
  const escaped = id === '.' || id === '..' || id.startsWith('~') ? `~${id}` : id
  return encodeURIComponent(escaped)
}

export function idFromSegment(segment: string): string {
  let id: string
  try {
    id = decodeURIComponent(segment)
  } catch {
    id = segment
  }
  return id.startsWith('~') ? id.slice(1) : id
}

export function agentPath(id: string): string {
  return `/agents/${idSegment(id)}`
}

export function sessionPath(id: string): string {
  return `/sessions/${idSegment(id)}`
}

/** The id in the current route `/<collection>/<id>`, decoded once from the raw path. */
export function useRouteId(collection: 'agents' | 'sessions'): string {
  const { pathname } = useLocation()
  // The location's pathname is the address as the browser keeps it: still percent-encoded.
  const prefix = `/${collection}/`
  const at = pathname.indexOf(prefix)
  return at < 0 ? '' : idFromSegment(pathname.slice(at + prefix.length))
}
