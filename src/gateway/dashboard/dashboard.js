// The dashboard: plain browser JavaScript against the gateway's own API (no build step).
import { flowPicture, shortId } from '/flow-picture.js';

const $ = (id) => document.getElementById(id);
const NIL = '00000000-0000-0000-0000-000000000000';
const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#0891b2', '#ea580c', '#4d7c0f', '#be185d'];
const colourOf = new Map();
const colour = (node) => {
  if (!colourOf.has(node)) colourOf.set(node, PALETTE[colourOf.size % PALETTE.length]);
  return colourOf.get(node);
};

let key = new URLSearchParams(location.search).get('accesskey') ?? sessionStorage.getItem('activeflow-key') ?? '';
let customer = sessionStorage.getItem('activeflow-customer') ?? '';
let timers = [];
let socket = null;
let live = null; // { id, customer, events }

async function api(path) {
  const sep = path.includes('?') ? '&' : '?';
  const scoped = customer !== '' && !path.startsWith('/v1.0/cluster') ? `${path}${sep}customer_id=${encodeURIComponent(customer)}` : path;
  const res = await fetch(scoped, { headers: { authorization: `Bearer ${key}` } });
  const body = await res.json();
  if (!res.ok) throw Object.assign(new Error(body.error?.message ?? res.statusText), { status: res.status });
  return body;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.append(td);
  }
  return tr;
}

async function refreshCluster() {
  try {
    const s = await api('/v1.0/cluster/shards');
    $('cluster-note').textContent = `${s.shard_count} shards`;
    $('nodes').tBodies[0].replaceChildren(
      ...s.nodes.map((n) => {
        const tr = row([n.node_id, n.draining ? 'draining' : 'live', String(n.shards), String(n.target_shards)]);
        tr.firstChild.style.color = colour(n.node_id);
        tr.dataset.node = n.node_id;
        return tr;
      }),
    );
    const grid = $('shards');
    if (grid.childElementCount !== s.shards.length) grid.replaceChildren(...s.shards.map(() => Object.assign(document.createElement('div'), { className: 'shard' })));
    s.shards.forEach((sh, i) => {
      const cell = grid.children[i];
      cell.style.background = sh.owner === null ? '#d1d5db' : colour(sh.owner);
      cell.classList.toggle('moving', sh.owner !== sh.target);
      cell.title = `shard ${sh.shard}: ${sh.owner ?? 'unowned'}${sh.owner !== sh.target ? ` -> ${sh.target}` : ''}`;
      cell.dataset.owner = sh.owner ?? '';
    });
    $('moving').textContent = s.moving === 0 ? 'every shard is where it should be' : `${s.moving} shards moving`;
  } catch (e) {
    $('cluster-note').textContent = e.status === 403 ? "(an operator's key shows the cluster)" : `(${e.message})`;
  }
}

let customersAllowed = true; // a customer's key gets 403 once, and is not asked again

async function refreshCustomers() {
  if (!customersAllowed) return;
  try {
    const c = await api('/v1.0/cluster/customers');
    $('customers-section').hidden = false;
    $('customers-note').textContent = `${c.running_activeflows} running, ${c.customer_count} customers${c.customer_count > c.customers.length ? ` (the busiest ${c.customers.length} shown)` : ''}`;
    $('customers').tBodies[0].replaceChildren(
      ...c.customers.map((cu) => {
        const tr = row([cu.customer_id, String(cu.running_activeflows)]);
        tr.dataset.customer = cu.customer_id;
        tr.classList.toggle('current', cu.customer_id === customer);
        // An operator picks a customer here instead of typing its id.
        tr.addEventListener('click', () => {
          customer = cu.customer_id;
          $('customer').value = customer;
          sessionStorage.setItem('activeflow-customer', customer);
          void refreshCustomers();
          void refreshFlows();
        });
        return tr;
      }),
    );
  } catch (e) {
    // A customer's key sees its own activeflows only: the cross-customer table is not for it.
    if (e.status === 403) {
      customersAllowed = false;
      $('customers-section').hidden = true;
    } else $('customers-note').textContent = `(${e.message})`;
  }
}

async function refreshFlows() {
  $('flow-customer').textContent = customer === '' ? '' : `of ${customer}`;
  try {
    const page = await api('/v1.0/activeflows?status=running');
    $('flow-count').textContent = `${page.result.length}${page.next_page_token ? '+' : ''}`;
    $('activeflows').tBodies[0].replaceChildren(
      ...page.result.map((af) => {
        const tr = row([af.id, `${af.reference_type} ${af.reference_id === NIL ? '' : af.reference_id}`, af.current_action.type ?? af.current_action.id, af.tm_update ?? af.tm_create ?? '']);
        tr.dataset.id = af.id;
        tr.classList.toggle('current', live?.id === af.id);
        tr.addEventListener('click', () => follow(af.id, af.customer_id));
        return tr;
      }),
    );
    $('status').textContent = 'connected';
  } catch (e) {
    if (customer === '' && e.status === 400 && customersAllowed) {
      // An operator's key spans every customer: it picks one in the table above, nothing to type.
      $('flow-count').textContent = '(choose a customer in the table above)';
      $('activeflows').tBodies[0].replaceChildren();
      $('status').textContent = 'connected (operator key)';
      return;
    }
    $('status').textContent = e.message;
  }
}

/** The view of one activeflow; with `prev` (the state a move before), what changed is highlighted. */
function renderLive(af, prev = null) {
  $('live-status').textContent = af.status === 'ended' ? `ended (${af.end_reason})` : af.status;
  $('live-stack').textContent = af.current_stack_id;
  $('live-action').textContent = `${af.current_action.type ?? 'pseudo'} ${af.current_action.id}`;
  $('live-action').classList.toggle('changed', prev !== null && (prev.current_action.id !== af.current_action.id || prev.current_stack_id !== af.current_stack_id));
  $('live-stacks').replaceChildren(
    ...Object.entries(af.stack_map).map(([id, st]) => {
      const div = Object.assign(document.createElement('div'), { className: 'stack' });
      if (prev !== null && !(id in prev.stack_map)) div.classList.add('changed');
      div.append(Object.assign(document.createElement('code'), { textContent: id === '00000000-0000-0000-0000-000000000001' ? 'main' : id }));
      const ol = document.createElement('ol');
      for (const a of st.actions) {
        const li = Object.assign(document.createElement('li'), { textContent: `${a.type} ${shortId(a.id)}`, title: a.id });
        if (id === af.current_stack_id && a.id === af.current_action.id) li.className = 'current';
        ol.append(li);
      }
      div.append(ol);
      return div;
    }),
  );
  const gone = prev === null ? [] : Object.keys(prev.variables).filter((k) => !(k in af.variables));
  $('live-variables').tBodies[0].replaceChildren(
    ...Object.entries(af.variables)
      .sort()
      .map(([k, v]) => {
        const tr = row([k, v]);
        tr.dataset.key = k;
        if (prev !== null && prev.variables[k] !== v) tr.className = 'changed';
        return tr;
      }),
    ...gone.map((k) => Object.assign(row([k, prev.variables[k]]), { className: 'changed deleted' })),
  );
  $('live-executed').replaceChildren(
    ...af.executed_actions.map((a, i) =>
      Object.assign(document.createElement('li'), {
        textContent: `${a.type ?? 'start'} ${shortId(a.id)}`,
        title: a.id,
        className: prev !== null && i >= prev.executed_actions.length ? 'changed' : '',
      }),
    ),
  );
  $('live-picture').replaceChildren(flowPicture(af));
}

/** The followed activeflow's moves, re-derived from its journal by the gateway; a click shows one. */
async function refreshTimeline() {
  if (live === null) return;
  const shown = live;
  const { moves } = await api(`/v1.0/activeflows/${shown.id}/timeline`);
  if (shown !== live) return;
  live.moves = moves;
  $('live-timeline').replaceChildren(
    ...moves.map((m, i) => {
      const what = m.kind === 'move' ? m.request.type : m.kind;
      const li = Object.assign(document.createElement('li'), { textContent: `${m.n} ${what}`, title: `entry ${m.n}, ${m.at}${m.request ? `: ${JSON.stringify(m.request)}` : ''}` });
      li.dataset.n = String(m.n);
      li.classList.toggle('selected', live.travel === i);
      li.addEventListener('click', () => travel(i));
      return li;
    }),
  );
}

/** Shows the activeflow as it was after move `i` of the timeline (null: live again). */
function travel(i) {
  if (live === null) return;
  live.travel = i;
  for (const li of $('live-timeline').children) li.classList.toggle('selected', Number(li.dataset.n) === live.moves[i]?.n);
  if (i === null) {
    $('travel-note').textContent = 'live';
    void inspect();
    return;
  }
  const m = live.moves[i];
  const note = $('travel-note');
  note.replaceChildren(`as it was after entry ${m.n} (${m.kind === 'move' ? m.request.type : m.kind}, ${m.at}): in green, what that move changed. `);
  const back = Object.assign(document.createElement('a'), { href: '#', textContent: 'back to live' });
  back.dataset.testid = 'travel-live';
  back.addEventListener('click', (e) => {
    e.preventDefault();
    travel(null);
  });
  note.append(back);
  renderLive(m.activeflow, i > 0 ? live.moves[i - 1].activeflow : null);
}

async function inspect() {
  if (live === null) return;
  const shown = live;
  const af = await api(`/v1.0/activeflows/${shown.id}/inspect`);
  if (shown.travel !== null) return; // looking at the past: the live state waits
  renderLive(af);
  if (!shown.scrolled && shown === live) {
    // The view opens below the tables: bring it into sight once it has its content, or the click
    // looks like it did nothing.
    shown.scrolled = true;
    $('live').scrollIntoView({ block: 'start' });
  }
}

function follow(id, customerId) {
  live = { id, customer: customerId, events: 0, scrolled: false, moves: [], travel: null };
  $('travel-note').textContent = 'live';
  $('live').hidden = false;
  $('live-id').textContent = id;
  $('live-events').textContent = '0';
  for (const tr of $('activeflows').tBodies[0].rows) tr.classList.toggle('current', tr.dataset.id === id);
  void inspect();
  void refreshTimeline().catch(() => {});
  if (socket === null) return;
  for (const t of socket.topics) socket.ws.send(JSON.stringify({ type: 'unsubscribe', topics: [t] }));
  const topic = `customer_id:${customerId}:activeflow:${id}`;
  socket.topics = [topic];
  socket.ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], from_seq: 1 }));
}

function openSocket() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1.0/ws?token=${encodeURIComponent(key)}`);
  socket = { ws, topics: [] };
  ws.addEventListener('message', (m) => {
    const msg = JSON.parse(m.data);
    if (live !== null && msg.topic === `customer_id:${live.customer}:activeflow:${live.id}`) {
      live.events++;
      $('live-events').textContent = String(live.events);
      void inspect();
      void refreshTimeline().catch(() => {});
    }
  });
  ws.addEventListener('close', () => {
    if (socket?.ws === ws)
      setTimeout(() => {
        if (socket?.ws === ws) {
          openSocket();
          if (live) follow(live.id, live.customer);
        }
      }, 1000);
  });
  ws.addEventListener('open', () => {
    if (live) follow(live.id, live.customer);
  });
}

function start() {
  for (const t of timers) clearInterval(t);
  customersAllowed = true;
  sessionStorage.setItem('activeflow-key', key);
  sessionStorage.setItem('activeflow-customer', customer);
  socket?.ws.close();
  socket = null;
  openSocket();
  void refreshCluster();
  void refreshFlows();
  void refreshCustomers();
  // Events bring moves at once; variables change without an event, so the live view also polls.
  timers = [
    setInterval(refreshCluster, 1000),
    setInterval(refreshFlows, 2000),
    setInterval(refreshCustomers, 2000),
    setInterval(() => void inspect().catch(() => {}), 2000),
    setInterval(() => void refreshTimeline().catch(() => {}), 2000),
  ];
}

$('key').value = key;
$('customer').value = customer;
$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('key').value.trim();
  customer = $('customer').value.trim();
  start();
});
if (key !== '') start();
