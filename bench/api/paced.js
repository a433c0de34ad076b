#!/usr/bin/env node
// bench/api/paced.js: open-loop (rate-limited) POST /api/v1/memories load for bench/api/run.sh,
// optionally with one SSE subscriber on GET /api/v1/events/memories.
//
// Requests are scheduled at start + i/rate whatever the server does (no coordinated omission):
// latency is measured from the scheduled time (what a client arriving at that rate sees) and,
// for information, from the moment the request was actually written. At most --conns requests
// are in flight (keep-alive connections); the rest wait in the client queue, which counts in the
// scheduled-time latency. Same bodies as write.lua (unique subject and text per request).
//
// usage: paced.js --url http://127.0.0.1:PORT --project P --rate N --duration S [--conns 16]
//                 [--tag T] [--sse] [--csv FILE]
// --sse: subscribe first (project-wide), record when each memory.created frame arrives.
// --csv: one line per created memory: id,sched_ms,sent_ms,resp_ms,sse_ms (epoch ms, fractional).
// Prints one PACEDJSON line (latencies in us). Every wait is bounded.
'use strict';
const http = require('http');
const fs = require('fs');
const { performance } = require('perf_hooks');

const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (!a.startsWith('--')) continue;
  const k = a.slice(2);
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) args[k] = true; else { args[k] = v; i++; }
}
const url = new URL(args.url);
const project = args.project || 'bench';
const rate = Number(args.rate);
const durationS = Number(args.duration || 10);
const conns = Number(args.conns || 16);
const tag = args.tag || 'p' + process.pid;
const total = Math.floor(rate * durationS);
if (!(rate > 0) || !(total > 0)) { console.error('paced.js: --rate and --duration required'); process.exit(2); }

const words = ['apple', 'river', 'stone', 'cloud', 'maple', 'violet', 'copper', 'harbor', 'meadow',
  'lantern', 'pepper', 'silver', 'garden', 'window', 'thunder', 'orchid', 'marble', 'candle', 'forest',
  'pillow', 'rocket', 'saddle', 'tunnel', 'velvet', 'walnut', 'yellow', 'zephyr', 'basket', 'cactus',
  'dragon', 'falcon', 'glacier'];
const w = () => words[Math.floor(Math.random() * words.length)];
const epoch = (t) => performance.timeOrigin + t; // performance.now() -> epoch ms

const agent = new http.Agent({ keepAlive: true, maxSockets: conns, maxFreeSockets: conns });
const recs = new Array(total);
const sseAt = new Map(); // memory id -> arrival (performance.now())
let done = 0, ok = 0, dup = 0, other = 0, neterr = 0, sent = 0;
let start = 0;
let sseReq = null;

function fire(i) {
  const sched = start + (i * 1000) / rate;
  const id = `${tag}-${i}`;
  const body = JSON.stringify({ subject_id: `s-${id}`, text: `note ${id} about ${w()} ${w()} ${w()}` });
  const rec = { sched, sent: 0, resp: 0, id: null };
  recs[i] = rec;
  const req = http.request({
    agent, host: url.hostname, port: url.port, method: 'POST', path: '/api/v1/memories',
    headers: { 'content-type': 'application/json', 'x-project-id': project,
      'content-length': Buffer.byteLength(body) },
  }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      rec.resp = performance.now();
      if (res.statusCode === 201) {
        ok++;
        try { rec.id = JSON.parse(Buffer.concat(chunks).toString()).id; } catch (e) { /* counted below */ }
      } else if (res.statusCode === 200) dup++; else other++;
      finish();
    });
  });
  req.on('socket', (s) => {
    // The request is written once the socket is ours (connected or reused).
    const mark = () => { rec.sent = performance.now(); };
    if (s.connecting) s.once('connect', mark); else mark();
  });
  req.on('error', () => { neterr++; rec.resp = 0; finish(); });
  req.end(body);
  sent++;
}

let finished = false;
function finish() {
  done++;
  if (done === total && !finished) { finished = true; setTimeout(report, args.sse ? 300 : 0); }
}

function tick() {
  const now = performance.now();
  const due = Math.min(total, Math.floor(((now - start) * rate) / 1000) + 1);
  while (sent < due) fire(sent);
  if (sent < total) setTimeout(tick, 1);
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round(sorted[k] * 1000);
}

let reported = false;
function report() {
  if (reported) return;
  reported = true;
  const lat = [], svc = [], sse = [];
  let last = 0;
  for (const r of recs) {
    if (!r || !r.resp) continue;
    lat.push(r.resp - r.sched);
    svc.push(r.resp - (r.sent || r.sched));
    if (r.resp > last) last = r.resp;
    if (r.id && sseAt.has(r.id)) sse.push(sseAt.get(r.id) - r.resp);
  }
  lat.sort((a, b) => a - b); svc.sort((a, b) => a - b); sse.sort((a, b) => a - b);
  const elapsed = (last - start) / 1000;
  const out = {
    target_rate: rate, requests: total, completed: lat.length, duration_s: Number(elapsed.toFixed(3)),
    rps: Number((lat.length / elapsed).toFixed(1)), status_201: ok, status_200: dup, status_other: other,
    err_net: neterr, conns,
    p50_us: pct(lat, 50), p90_us: pct(lat, 90), p99_us: pct(lat, 99), max_us: pct(lat, 100),
    svc_p50_us: pct(svc, 50), svc_p99_us: pct(svc, 99),
  };
  if (args.sse) {
    out.sse_frames = sseAt.size;
    out.sse_matched = sse.length;
    out.sse_p50_us = pct(sse, 50); out.sse_p90_us = pct(sse, 90); out.sse_p99_us = pct(sse, 99);
    out.sse_max_us = pct(sse, 100);
  }
  if (args.csv) {
    const lines = ['id,sched_ms,sent_ms,resp_ms,sse_ms'];
    for (const r of recs) {
      if (!r || !r.id) continue;
      const s = sseAt.get(r.id);
      lines.push([r.id, epoch(r.sched).toFixed(3), epoch(r.sent || r.sched).toFixed(3),
        epoch(r.resp).toFixed(3), s ? epoch(s).toFixed(3) : ''].join(','));
    }
    fs.writeFileSync(args.csv, lines.join('\n') + '\n');
  }
  process.stdout.write('PACEDJSON ' + JSON.stringify(out) + '\n');
  if (sseReq) sseReq.destroy();
  agent.destroy();
  process.exit(0);
}

function begin() {
  start = performance.now();
  tick();
  // Hard bound: report whatever completed 15 s after the last scheduled send.
  setTimeout(() => { if (!reported) { console.error('paced.js: timed out waiting for responses'); report(); } },
    durationS * 1000 + 15000).unref();
}

if (args.sse) {
  let buf = '';
  let started = false;
  const t = setTimeout(() => { console.error('paced.js: no SSE "connected" within 5 s'); process.exit(1); }, 5000);
  sseReq = http.get({ host: url.hostname, port: url.port, path: '/api/v1/events/memories',
    headers: { 'x-project-id': project, accept: 'text/event-stream' } }, (res) => {
    if (res.statusCode !== 200) { console.error('paced.js: SSE status ' + res.statusCode); process.exit(1); }
    res.setEncoding('utf8');
    res.on('data', (chunk) => {
      const now = performance.now();
      buf += chunk;
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, k);
        buf = buf.slice(k + 2);
        let ev = 'message', data = '';
        for (const line of frame.split('\n')) {
          if (line.startsWith('event:')) ev = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (ev === 'memory.created') {
          try { const d = JSON.parse(data); if (d.id) sseAt.set(d.id, now); } catch (e) { /* ignore */ }
        } else if (!started && (ev === 'connected' || frame.startsWith(':'))) {
          started = true; clearTimeout(t); begin();
        }
      }
    });
  });
  sseReq.on('error', (e) => { console.error('paced.js: SSE ' + e.message); process.exit(1); });
} else {
  begin();
}
