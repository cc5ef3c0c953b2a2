/** A virtualized table: only the rows in view are in the DOM, so long lists stay cheap. */
import { useVirtualizer } from '@tanstack/react-virtual'
import { useRef, type ReactNode } from 'react'

export interface Column<T> {
  key: string
  header: ReactNode
  /** A CSS grid track, e.g. "120px" or "2fr". */
  width: string
  render: (row: T) => ReactNode
  sortable?: boolean
  align?: 'left' | 'right'
}

interface Props<T> {
  count: number
  getRow: (index: number) => T | undefined
  rowKey: (row: T, index: number) => string | number
  columns: Column<T>[]
  rowHeight?: number
  height?: number | string
  sort?: { key: string; dir: 'asc' | 'desc' }
  onSort?: (key: string) => void
  onRowClick?: (row: T) => void
  selectedKey?: string | number | null
  empty?: ReactNode
  testId?: string
  rowClass?: (row: T) => string
  onScrollTop?: (atTop: boolean) => void
  footer?: ReactNode
}

export function VirtualTable<T>({
  count,
  getRow,
  rowKey,
  columns,
  rowHeight = 36,
  height = 480,
  sort,
  onSort,
  onRowClick,
  selectedKey,
  empty,
  testId,
  rowClass,
  onScrollTop,
  footer,
}: Props<T>) {
  const scroller = useRef<HTMLDivElement>(null)
  const head = useRef<HTMLDivElement>(null)
  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => scroller.current,
    estimateSize: () => rowHeight,
    overscan: 12,
  })
  const template = columns.map((c) => c.width).join(' ')
  return (
    <div className="vtable" data-testid={testId}>
      <div className="vtable-head" ref={head} style={{ gridTemplateColumns: template }}>
        {columns.map((c) => {
          const active = sort?.key === c.key
          return (
            <div
              key={c.key}
              className={`vth ${c.sortable ? 'sortable' : ''} ${active ? 'sorted' : ''} ${c.align === 'right' ? 'right' : ''}`}
              onClick={c.sortable && onSort ? () => onSort(c.key) : undefined}
              data-col={c.key}
            >
              {c.header}
              {active && <span className="sort-dir">{sort?.dir === 'asc' ? ' ▲' : ' ▼'}</span>}
            </div>
          )
        })}
      </div>
      <div
        className="vtable-scroll"
        ref={scroller}
        style={{ height }}
        onScroll={(e) => {
          // On a narrow screen the rows scroll sideways: the header goes with them.
          if (head.current) head.current.scrollLeft = e.currentTarget.scrollLeft
          onScrollTop?.(e.currentTarget.scrollTop < 4)
        }}
      >
        {count === 0 ? (
          <div className="vtable-empty">{empty}</div>
        ) : (
          <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
            {virtualizer.getVirtualItems().map((item) => {
              const row = getRow(item.index)
              if (row === undefined) return null
              const key = rowKey(row, item.index)
              return (
                <div
                  key={key}
                  className={`vrow ${onRowClick ? 'clickable' : ''} ${selectedKey === key ? 'selected' : ''} ${rowClass ? rowClass(row) : ''}`}
                  style={{ gridTemplateColumns: template, height: rowHeight, transform: `translateY(${item.start}px)` }}
                  onClick={onRowClick ? () => onRowClick(row) : undefined}
                  data-testid="row"
                >
                  {columns.map((c) => (
                    <div key={c.key} className={`vtd ${c.align === 'right' ? 'right' : ''}`} data-col={c.key}>
                      {c.render(row)}
                    </div>
                  ))}
                </div>
              )
            })}
          </div>
        )}
        {footer}
      </div>
    </div>
  )
}
