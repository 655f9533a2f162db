// A picture of an activeflow's actions as a graph (plain browser JavaScript, an SVG built here):
// one column per stack (the main stack first, each pushed stack beside the stack it returns to),
// one box per action, an arrow to its successor (its next_id, else the action below it) and
// labelled arcs for the jumps of goto, branch and the conditions. The cursor's action is
// highlighted, executed actions are marked; each box's title holds the full action id.
const SVG = 'http://www.w3.org/2000/svg';
const MAIN = '00000000-0000-0000-0000-000000000001';
const NIL = '00000000-0000-0000-0000-000000000000';
const BOX_W = 300;
const BOX_H = 30;
const ROW = 46;
const COL = BOX_W + 150;
const TOP = 34;
const LEFT = 60;

const el = (name, attrs = {}, text) => {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
};

/** `a0000000…0001`: enough of an id to tell actions apart; the title has the whole of it. */
export const shortId = (id) => (id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id);

/** What an action does, in a few words. */
function label(a) {
  const o = a.option ?? {};
  const words = {
    talk: o.text,
    play: Array.isArray(o.stream_urls) ? o.stream_urls[0] : undefined,
    branch: o.variable ?? 'voipbin.call.digits',
    goto: o.loop_count !== undefined ? `${o.loop_count} more` : undefined,
    variable_set: o.key !== undefined ? `${o.key} = ${o.value}` : undefined,
    condition_variable: o.variable !== undefined ? `${o.variable} ${o.condition ?? ''} ${o.value_string ?? o.value_number ?? o.value_length ?? ''}` : undefined,
    digits_receive: o.length !== undefined ? `${o.length} digit(s)` : undefined,
    fetch_flow: o.flow_id !== undefined ? shortId(o.flow_id) : undefined,
    queue_join: o.queue_id !== undefined ? shortId(o.queue_id) : undefined,
    webhook_send: o.uri,
    fetch: o.event_url,
  }[a.type];
  const text = typeof words === 'string' ? words : '';
  return text.length > 22 ? `${text.slice(0, 21)}…` : text;
}

/** The jumps an action may take besides its successor: [target id, label]. */
function jumps(a) {
  const o = a.option ?? {};
  const out = [];
  if (a.type === 'goto' && o.target_id) out.push([o.target_id, 'goto']);
  if (a.type === 'branch') {
    for (const [k, t] of Object.entries(o.target_ids ?? {})) out.push([t, k]);
    if (o.default_target_id) out.push([o.default_target_id, 'default']);
  }
  if (typeof o.false_target_id === 'string' && o.false_target_id !== NIL) out.push([o.false_target_id, 'false']);
  return out;
}

/** The stacks in columns: main first, then each pushed stack after the one it returns to. */
function columns(stackMap) {
  const ids = Object.keys(stackMap);
  const order = [];
  const place = (id) => {
    if (order.includes(id)) return;
    order.push(id);
    for (const other of ids) if (stackMap[other].return_stack_id === id && other !== id) place(other);
  };
  if (stackMap[MAIN]) place(MAIN);
  for (const id of ids) place(id);
  return order;
}

/**
 * The picture of `af` (an activeflow as `/inspect` answers it). `executed` is the set of the ids of
 * the actions run so far.
 */
export function flowPicture(af) {
  const executed = new Set(af.executed_actions.map((a) => a.id));
  const order = columns(af.stack_map);
  const where = new Map(); // `${stack}/${action id}` -> {x, y}
  order.forEach((stack, c) => {
    af.stack_map[stack].actions.forEach((a, r) => {
      where.set(`${stack}/${a.id}`, { x: LEFT + c * COL, y: TOP + r * ROW });
    });
  });
  const rows = Math.max(1, ...order.map((s) => af.stack_map[s].actions.length));
  const svg = el('svg', { width: LEFT + order.length * COL, height: TOP + rows * ROW + 10, class: 'flow-picture', 'data-testid': 'flow-picture', role: 'img' });
  svg.append(el('title', {}, `the actions of activeflow ${af.id}`));
  const defs = el('defs');
  for (const [name, colour] of [
    ['arrow', '#6b7280'],
    ['jump', '#2563eb'],
  ]) {
    const marker = el('marker', { id: name, viewBox: '0 0 8 8', refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    marker.append(el('path', { d: 'M0,0 L8,4 L0,8 z', fill: colour }));
    defs.append(marker);
  }
  svg.append(defs);
  const edges = el('g');
  const boxes = el('g');
  svg.append(edges, boxes);
  order.forEach((stack, c) => {
    const st = af.stack_map[stack];
    const x = LEFT + c * COL;
    const title = stack === MAIN ? 'main' : `stack ${shortId(stack)}, returns to ${st.return_stack_id === MAIN ? 'main' : shortId(st.return_stack_id)}`;
    const heading = el('text', { x, y: 16, class: 'stack-title' }, title);
    heading.append(el('title', {}, stack));
    boxes.append(heading);
    st.actions.forEach((a, r) => {
      const y = TOP + r * ROW;
      const current = stack === af.current_stack_id && a.id === af.current_action.id;
      const g = el('g', { class: `action${current ? ' current' : ''}${executed.has(a.id) ? ' executed' : ''}`, 'data-action-id': a.id, 'data-stack-id': stack });
      g.append(el('title', {}, `${a.type} ${a.id}${a.next_id && a.next_id !== NIL ? `\nnext_id ${a.next_id}` : ''}`));
      g.append(el('rect', { x, y, width: BOX_W, height: BOX_H, rx: 5 }));
      g.append(el('text', { x: x + 8, y: y + 19, class: 'type' }, `${r + 1}. ${a.type}`));
      g.append(el('text', { x: x + 150, y: y + 19, class: 'detail' }, label(a) || shortId(a.id)));
      if (executed.has(a.id)) g.append(el('text', { x: x + BOX_W - 16, y: y + 19, class: 'tick' }, '✓'));
      boxes.append(g);
      // Its successor: below it (a short arrow), or elsewhere (an arc on the left).
      const next = a.next_id && a.next_id !== NIL ? st.actions.findIndex((b) => b.id === a.next_id) : r + 1;
      if (next === r + 1 && next < st.actions.length) {
        edges.append(el('line', { x1: x + BOX_W / 2, y1: y + BOX_H, x2: x + BOX_W / 2, y2: y + ROW - 1, class: 'edge', 'marker-end': 'url(#arrow)' }));
      } else if (next >= 0 && next < st.actions.length) {
        const y2 = TOP + next * ROW + BOX_H / 2;
        const bend = 20 + Math.abs(next - r) * 6;
        edges.append(el('path', { d: `M${x},${y + BOX_H / 2} C${x - bend},${y + BOX_H / 2} ${x - bend},${y2} ${x},${y2}`, class: 'edge', fill: 'none', 'marker-end': 'url(#arrow)' }));
      }
      // Jumps: arcs on the right, labelled.
      jumps(a).forEach(([target, text], j) => {
        const to = where.get(`${stack}/${target}`);
        if (to === undefined) return;
        const y1 = y + 8 + (j % 3) * 7;
        const y2 = to.y + BOX_H / 2;
        const bend = 30 + (Math.abs(to.y - y) / ROW) * 8 + j * 10;
        const path = el('path', {
          d: `M${x + BOX_W},${y1} C${x + BOX_W + bend},${y1} ${x + BOX_W + bend},${y2} ${x + BOX_W},${y2}`,
          class: 'jump',
          fill: 'none',
          'marker-end': 'url(#jump)',
          'data-label': text,
        });
        edges.append(path);
        edges.append(el('text', { x: x + BOX_W + bend * 0.75 + 2, y: (y1 + y2) / 2 + 4, class: 'jump-label' }, text));
      });
    });
  });
  return svg;
}
