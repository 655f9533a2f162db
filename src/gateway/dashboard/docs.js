// Renders the gateway's own /openapi.json: every path and method, its parameters, request body and
// answers, with schemas expanded one level ($refs resolved against components.schemas).
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};

function resolve(spec, s) {
  if (s?.$ref) return { name: s.$ref.split('/').pop(), ...spec.components.schemas[s.$ref.split('/').pop()] };
  return s ?? {};
}

function describeSchema(spec, s, depth = 0) {
  const r = resolve(spec, s);
  if (r.type === 'array') return `array of ${describeSchema(spec, r.items, depth)}`;
  if (r.properties && depth < 1) {
    const req = new Set(r.required ?? []);
    const list = el('ul');
    for (const [k, v] of Object.entries(r.properties)) {
      const p = resolve(spec, v);
      const type = p.type === 'array' ? `array of ${resolve(spec, p.items).name ?? resolve(spec, p.items).type ?? 'any'}` : (p.name ?? p.type ?? (p.enum ? 'enum' : 'any'));
      list.append(el('li', {}, el('code', { textContent: k }), ` ${type}${req.has(k) ? ' (required)' : ''}${p.description ? ` — ${p.description}` : ''}`));
    }
    return el('div', {}, r.name ? el('b', { textContent: r.name }) : null, list);
  }
  return r.name ?? r.type ?? 'object';
}

const spec = await (await fetch('/openapi.json')).json();
document.title = spec.info.title;
document.getElementById('version').textContent = `version ${spec.info.version}`;
const root = document.getElementById('api');
root.append(el('section', {}, el('p', { textContent: spec.info.description })));
for (const [path, methods] of Object.entries(spec.paths)) {
  for (const [method, op] of Object.entries(methods)) {
    const section = el('section', { className: 'endpoint' });
    section.dataset.endpoint = `${method.toUpperCase()} ${path}`;
    section.append(el('h2', {}, el('code', { textContent: `${method.toUpperCase()} ${path}` }), ' ', el('small', { textContent: op.summary ?? '' })));
    if (op.parameters?.length) {
      section.append(
        el('h3', { textContent: 'Parameters' }),
        el('ul', {}, ...op.parameters.map((p) => el('li', {}, el('code', { textContent: p.name }), ` (${p.in}${p.required ? ', required' : ''}) ${p.description ?? ''}`))),
      );
    }
    const body = op.requestBody?.content?.['application/json']?.schema;
    if (body)
      section.append(
        el('h3', { textContent: 'Body' }),
        (() => {
          const d = describeSchema(spec, body);
          return typeof d === 'string' ? el('p', { textContent: d }) : d;
        })(),
      );
    section.append(
      el('h3', { textContent: 'Answers' }),
      el(
        'ul',
        {},
        ...Object.entries(op.responses).map(([status, r]) => {
          const resp = r.$ref ? spec.components.responses[r.$ref.split('/').pop()] : r;
          const schema = resp.content?.['application/json']?.schema;
          const shape = schema ? describeSchema(spec, schema, 1) : '';
          return el('li', {}, el('code', { textContent: status }), ` ${resp.description ?? ''}${typeof shape === 'string' && shape ? `: ${shape}` : ''}`);
        }),
      ),
    );
    root.append(section);
  }
}
