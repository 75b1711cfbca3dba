// Row 2 of bench/RESULTS.md: Pipedrive's official Node.js SDK (npm `pipedrive`,
// v2 DealsApi.getDeal) against the same loopback server as the Lua client.
//   node bench/node_sdk.js URL N  -> one JSON line: calls, cpu_us (user+sys per
//   call over the N calls after 100 warm-up calls), wall_us, peak_rss_kb (VmHWM)
'use strict';
const fs = require('fs');
const { Configuration, DealsApi } = require('pipedrive/v2');

function peakRssKb() {
  const m = /VmHWM:\s*(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : -1;
}

async function main() {
  const url = process.argv[2];
  const n = Number(process.argv[3]);
  const api = new DealsApi(new Configuration({ apiKey: 'bench-token', basePath: url + '/api/v2' }));
  for (let i = 0; i < 100; i++) await api.getDeal({ id: 1 });
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const r = await api.getDeal({ id: 1 });
    if (!r || !r.data || r.data.id !== 1) throw new Error('bad answer');
  }
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - w0) / 1e3;
  console.log(JSON.stringify({ calls: n, cpu_us: (c.user + c.system) / n, wall_us: wall / n, peak_rss_kb: peakRssKb(),
    user_us: c.user / n, sys_us: c.system / n }));
}

main().catch((e) => {
  console.error(e && e.message);
  process.exit(1);
});
