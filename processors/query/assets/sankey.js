// funnelfold's page-flow diagram: the `/paths` answer drawn as a Sankey diagram in
// SVG, with no library. Columns are steps (the first is the landing page), a node's
// height and a band's width are proportional to sessions, and every node and band
// carries its numbers (data attributes and a title) so that the browser tests can
// read exactly what was drawn.
'use strict';

const Sankey = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const NODE_W = 14;
  const COL_W = 210;
  // Between two nodes of a column: enough for the label line of each, so labels,
  // which sit at their node's middle, never overlap however small the nodes are.
  const GAP = 18;
  const MIN_H = 2;
  const TOP = 34;
  const LEFT = 8;
  const RIGHT = 200;
  const BOTTOM = 12;
  const LABEL_CHARS = 26;
  const ENDS = ['(exit)', '(more)'];
  const PALETTE = ['#2563eb', '#16a34a', '#f59e0b', '#db2777', '#7c3aed', '#0891b2', '#dc2626', '#65a30d', '#9333ea', '#ea580c'];
  const END_COLORS = { '(exit)': '#9ca3af', '(more)': '#4b5563' };

  // A page keeps its colour in every column, so its flows can be followed by eye;
  // colours go to pages in the order they are drawn (busiest landing pages first), so
  // the first ten pages never share one.
  function colors(nodes) {
    const of = new Map(Object.entries(END_COLORS));
    for (const n of nodes) {
      if (!of.has(n.path)) of.set(n.path, PALETTE[(of.size - 2) % PALETTE.length]);
    }
    return (path) => of.get(path);
  }

  const key = (step, path) => step + '\u0000' + path;

  // Positions of every node and band (pure: no DOM), in pixels.
  function layout(answer) {
    const nodes = answer.nodes.map((n) => ({ step: n.step, path: n.path, sessions: n.sessions, outs: [], ins: [] }));
    const byKey = new Map(nodes.map((n) => [key(n.step, n.path), n]));
    const steps = [...new Set(nodes.map((n) => n.step))].sort((a, b) => a - b);
    const first = steps.length ? steps[0] : 1;
    const columns = steps.map((step) => {
      // The API's order (busiest first), with the ends of journeys at the bottom.
      const of = nodes.filter((n) => n.step === step);
      return of.filter((n) => !ENDS.includes(n.path)).concat(ENDS.flatMap((e) => of.filter((n) => n.path === e)));
    });
    const tallest = Math.max(0, ...columns.map((c) => c.length));
    const inner = Math.max(340, tallest * (GAP + MIN_H) + 180);
    let scale = Infinity;
    for (const c of columns) {
      const total = c.reduce((a, n) => a + n.sessions, 0);
      if (total > 0) scale = Math.min(scale, (inner - (c.length - 1) * GAP - c.length * MIN_H) / total);
    }
    if (!Number.isFinite(scale)) scale = 0;
    columns.forEach((c) => {
      const used = c.reduce((a, n) => a + Math.max(MIN_H, n.sessions * scale), 0) + (c.length - 1) * GAP;
      let y = TOP + (inner - used) / 2;
      for (const n of c) {
        n.x = LEFT + (n.step - first) * COL_W;
        n.y = y;
        n.h = Math.max(MIN_H, n.sessions * scale);
        y += n.h + GAP;
      }
    });
    const links = [];
    for (const l of answer.links) {
      const source = byKey.get(key(l.step, l.from));
      const target = byKey.get(key(l.step + 1, l.to));
      // The API answers the nodes of every link it keeps; a link without them would
      // have nowhere to go, and is left out rather than drawn somewhere wrong.
      if (!source || !target) continue;
      const link = { step: l.step, from: l.from, to: l.to, sessions: l.sessions, source, target, w: Math.max(1, l.sessions * scale) };
      source.outs.push(link);
      target.ins.push(link);
      links.push(link);
    }
    // Bands leave a node in the order of where they go, and enter one in the order of
    // where they come from, so that they cross as little as they can.
    for (const n of nodes) {
      let y = n.y;
      for (const l of n.outs.sort((a, b) => a.target.y - b.target.y)) { l.sy = y; y += l.w; }
      y = n.y;
      for (const l of n.ins.sort((a, b) => a.source.y - b.source.y)) { l.ty = y; y += l.w; }
    }
    const columnsWide = steps.length ? steps[steps.length - 1] - first + 1 : 0;
    return {
      nodes,
      links,
      steps,
      first,
      width: LEFT + Math.max(0, columnsWide - 1) * COL_W + NODE_W + RIGHT,
      height: TOP + inner + BOTTOM,
    };
  }

  function svgEl(tag, attrs, title) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (title) {
      const t = document.createElementNS(NS, 'title');
      t.textContent = title;
      node.append(t);
    }
    return node;
  }

  function short(path) {
    return path.length > LABEL_CHARS ? path.slice(0, LABEL_CHARS - 1) + '…' : path;
  }

  // Draws `answer` into `container`; `fmt` formats a count, `onLanding(path)` is called
  // when a first-step node is clicked.
  function draw(container, answer, fmt, onLanding) {
    const g = layout(answer);
    const color = colors(g.nodes);
    const svg = svgEl('svg', {
      viewBox: `0 0 ${g.width} ${g.height}`,
      width: g.width,
      height: g.height,
      role: 'img',
      'aria-label': 'Page flows: sessions from page to page, step by step',
      class: 'sankey-svg',
    });
    for (const step of g.steps) {
      const heading = svgEl('text', { x: LEFT + (step - g.first) * COL_W, y: 16, class: 'step-label' });
      heading.textContent = step === 1 ? 'Step 1 (landing)' : 'Step ' + step;
      svg.append(heading);
    }
    for (const l of g.links) {
      const x0 = l.source.x + NODE_W;
      const x1 = l.target.x;
      const xm = (x0 + x1) / 2;
      const d = `M${x0},${l.sy} C${xm},${l.sy} ${xm},${l.ty} ${x1},${l.ty}`
        + ` L${x1},${l.ty + l.w} C${xm},${l.ty + l.w} ${xm},${l.sy + l.w} ${x0},${l.sy + l.w} Z`;
      svg.append(svgEl('path', {
        d,
        fill: color(l.from),
        class: 'flow-link',
        'data-link': '',
        'data-step': l.step,
        'data-from': l.from,
        'data-to': l.to,
        'data-sessions': l.sessions,
      }, `Step ${l.step}: ${l.from} → ${l.to}: ${fmt(l.sessions)} sessions`));
    }
    for (const n of g.nodes) {
      const rect = svgEl('rect', {
        x: n.x,
        y: n.y,
        width: NODE_W,
        height: n.h,
        fill: color(n.path),
        class: 'flow-node' + (n.step === 1 && onLanding && !ENDS.includes(n.path) ? ' landing' : ''),
        'data-node': '',
        'data-step': n.step,
        'data-path': n.path,
        'data-sessions': n.sessions,
      }, `Step ${n.step}: ${n.path}: ${fmt(n.sessions)} sessions`);
      if (n.step === 1 && onLanding && !ENDS.includes(n.path)) rect.addEventListener('click', () => onLanding(n.path));
      svg.append(rect);
      const label = svgEl('text', {
        x: n.x + NODE_W + 4,
        y: n.y + n.h / 2,
        'dominant-baseline': 'central',
        class: 'node-label' + (ENDS.includes(n.path) ? ' end' : ''),
        'data-step': n.step,
        'data-path': n.path,
      });
      label.textContent = short(n.path) + ' · ' + fmt(n.sessions);
      svg.append(label);
    }
    container.replaceChildren(svg);
  }

  return { draw, layout };
})();
