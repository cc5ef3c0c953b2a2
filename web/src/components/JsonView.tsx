/** A collapsible JSON inspector; every value is rendered as text, never as markup. */
import { useState } from 'react'

interface Props {
  value: unknown
  name?: string
  depth?: number
  defaultOpen?: number
}

const MAX_CHILDREN = 200

const LONG_STRING = 2000

function LongString({ value }: { value: string }) {
  const [all, setAll] = useState(false)
  const text = JSON.stringify(value)
  if (all || text.length <= LONG_STRING) return <span className="j-str">{text}</span>
  return (
    <span className="j-str">
      {text.slice(0, LONG_STRING)}
      <button type="button" className="linklike small" onClick={() => setAll(true)}>
        … {text.length - LONG_STRING} more characters
      </button>
    </span>
  )
}

function Primitive({ value }: { value: unknown }) {
  if (value === null) return <span className="j-null">null</span>
  switch (typeof value) {
    case 'string':
      return <LongString value={value} />
    case 'number':
      return <span className="j-num">{String(value)}</span>
    case 'boolean':
      return <span className="j-bool">{String(value)}</span>
    default:
      return <span className="j-null">{String(value)}</span>
  }
}

export function JsonView({ value, name, depth = 0, defaultOpen = 2 }: Props) {
  const [open, setOpen] = useState(depth < defaultOpen)
  const isArray = Array.isArray(value)
  const isObject = value !== null && typeof value === 'object'
  const label = name !== undefined ? <span className="j-key">{JSON.stringify(name)}: </span> : null
  if (!isObject) {
    return (
      <div className="j-row">
        {label}
        <Primitive value={value} />
      </div>
    )
  }
  const entries = isArray
    ? (value as unknown[]).map((v, i) => [String(i), v] as const)
    : Object.entries(value as Record<string, unknown>)
  const [openBr, closeBr] = isArray ? ['[', ']'] : ['{', '}']
  if (entries.length === 0) {
    return (
      <div className="j-row">
        {label}
        <span className="j-punct">
          {openBr}
          {closeBr}
        </span>
      </div>
    )
  }
  return (
    <div className="j-node">
      <div className="j-row j-toggle" onClick={() => setOpen(!open)}>
        <span className="j-caret">{open ? '▾' : '▸'}</span>
        {label}
        <span className="j-punct">{openBr}</span>
        {!open && (
          <span className="j-more">
            {entries.length} {isArray ? 'items' : 'keys'}
            {closeBr}
          </span>
        )}
      </div>
      {open && (
        <div className="j-children">
          {entries.slice(0, MAX_CHILDREN).map(([k, v]) => (
            <JsonView key={k} name={isArray ? undefined : k} value={v} depth={depth + 1} defaultOpen={defaultOpen} />
          ))}
          {entries.length > MAX_CHILDREN && <div className="j-more">… {entries.length - MAX_CHILDREN} more</div>}
          <div className="j-punct">{closeBr}</div>
        </div>
      )}
    </div>
  )
}
