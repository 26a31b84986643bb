// A table that renders only the rows in view. With 10,000 tasks, building every row would take
// the browser seconds and hold tens of thousands of nodes; here about fifty rows exist at any
// time, and two spacer rows give the scroll bar the height of the whole list. Rows are reused
// (only their text changes), so a click that lands while an event re-renders still hits a row.

const OVERSCAN = 8; // rows drawn beyond each edge, so a fast scroll shows no blank band

export class VirtualTable {
  // `fill(tr, item)`: writes `item` into the row `tr` (made by `make()`), which is reused.
  constructor({ scroller, body, rowHeight, make, fill }) {
    this.scroller = scroller;
    this.body = body;
    this.rowHeight = rowHeight;
    this.make = make;
    this.fill = fill;
    this.items = [];
    this.pool = [];
    this.top = spacer();
    this.bottom = spacer();
    this.body.append(this.top, this.bottom);
    let queued = false;
    // Scroll events come faster than frames: draw once per frame.
    const draw = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        this.render();
      });
    };
    scroller.addEventListener("scroll", draw, { passive: true });
    new ResizeObserver(draw).observe(scroller);
  }

  setItems(items) {
    this.items = items;
    this.render();
  }

  render() {
    const { rowHeight, items } = this;
    const header = this.body.parentElement.tHead?.offsetHeight ?? 0;
    const view = Math.max(this.scroller.clientHeight - header, rowHeight);
    const rows = Math.ceil(view / rowHeight) + 2 * OVERSCAN;
    // Clamped: when a filter shortens the list, the scroll position may still point past it.
    let first = Math.floor(this.scroller.scrollTop / rowHeight) - OVERSCAN;
    first = Math.max(0, Math.min(first, items.length - rows));
    const count = Math.min(items.length - first, rows);
    while (this.pool.length < count) {
      const tr = this.make();
      this.pool.push(tr);
      this.bottom.before(tr);
    }
    for (let i = 0; i < this.pool.length; i++) {
      const tr = this.pool[i];
      if (i < count) {
        tr.hidden = false;
        tr.setAttribute("aria-rowindex", String(first + i + 2)); // 1 is the header row
        this.fill(tr, items[first + i]);
      } else {
        tr.hidden = true;
      }
    }
    this.top.style.height = `${first * rowHeight}px`;
    this.bottom.style.height = `${Math.max(0, items.length - first - count) * rowHeight}px`;
    this.body.parentElement.setAttribute("aria-rowcount", String(items.length + 1));
  }
}

function spacer() {
  const tr = document.createElement("tr");
  tr.className = "spacer";
  tr.setAttribute("aria-hidden", "true");
  tr.append(document.createElement("td"));
  tr.firstChild.colSpan = 99;
  return tr;
}
