// Row 5 of bench/RESULTS.md: a Node.js `http` webhook receiver doing what
// pipedrive.triggers' handle() does for a v2 event: method, HTTP Basic auth
// (constant time), size and content type checks, JSON parse, normalization
// (event name, id, current/previous, changed keys), de-duplication by event id
// (bounded, with a TTL), dispatch to the callback, a JSON answer.
//   node bench/node_webhook.js PORT
'use strict';
const http = require('http');
const crypto = require('crypto');

const port = Number(process.argv[2]);
const expected = Buffer.from('Basic ' + Buffer.from('hook:s3cret').toString('base64'));
const MAX_BODY = 1048576;
const TTL_MS = 3600 * 1000;
const MAX_SEEN = 10000;
const seen = new Map(); // event id -> expiry, in insertion order
const ACTIONS = { create: 'added', change: 'updated', delete: 'deleted' };
let handled = 0;
const callback = (ev) => { handled += ev.id ? 1 : 0; };

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function normalize(p) {
  if (!p || typeof p !== 'object' || !p.meta || typeof p.meta !== 'object') return null;
  const m = p.meta;
  const action = ACTIONS[m.action];
  if (!action || typeof m.entity !== 'string') return null;
  const current = p.data === undefined ? null : p.data;
  const previous = p.previous === undefined ? null : p.previous;
  const changed = [];
  if (current && previous) {
    for (const k of Object.keys(previous)) {
      if (JSON.stringify(previous[k]) !== JSON.stringify(current[k])) changed.push(k);
    }
  }
  const id = Number(m.entity_id);
  return { event: m.entity + '.' + action, object: m.entity, action, id, current, previous, changed, meta: m, raw: p };
}

function authorized(given) {
  if (typeof given !== 'string' || given.length > 4096) return false;
  const g = Buffer.from(given.trim());
  return g.length === expected.length && crypto.timingSafeEqual(g, expected);
}

http.createServer((req, res) => {
  if (req.method !== 'POST') return reply(res, 405, { error: 'method not allowed' });
  if (!authorized(req.headers.authorization)) return reply(res, 401, { error: 'unauthorized' });
  const chunks = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) tooLarge = true;
    else chunks.push(c);
  });
  req.on('end', () => {
    if (tooLarge) return reply(res, 413, { error: 'payload too large' });
    const ct = req.headers['content-type'];
    if (ct !== undefined && !/^application\/json/i.test(ct)) return reply(res, 415, { error: 'expected application/json' });
    let payload;
    try { payload = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) {
      return reply(res, 400, { error: 'the body is not JSON' });
    }
    const ev = normalize(payload);
    if (!ev) return reply(res, 400, { error: 'not a webhook payload' });
    const key = 'v2|' + ev.meta.id;
    const now = Date.now();
    const exp = seen.get(key);
    if (exp !== undefined && exp > now) return reply(res, 200, { status: 'duplicate' });
    try { callback(ev); } catch (e) { return reply(res, 500, { error: 'callback failed' }); }
    seen.set(key, now + TTL_MS);
    if (seen.size > MAX_SEEN) seen.delete(seen.keys().next().value);
    return reply(res, 200, { status: 'ok' });
  });
}).listen(port, '127.0.0.1', () => console.log('listening ' + port));
