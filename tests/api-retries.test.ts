// Retry notices of the real GitHub client (throttling on, as outside the lab): each reaches the
// caller that is waiting, although plugin-throttling runs requests from queues shared by all.
import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import type net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createApis } from '../tasks/lib/apis.ts';
import { validateInventoryText } from '../tasks/lib/inventory.ts';
import { GOOD_INVENTORY } from './fixtures/bad-inventories.ts';

const notices = suite('API retry notices');

notices('GitHub with throttling: twelve concurrent callers, each told of its own request\'s retry and of no other', async () => {
  // A path answers 502 once, then 200; answers take a while, so that plugin-throttling's shared
  // queue (10 at once) holds requests back and starts them from other requests' completions.
  const seen = new Set<string>();
  const server = http.createServer((req, res) => {
    const first = !seen.has(req.url!);
    seen.add(req.url!);
    setTimeout(() => {
      res.writeHead(first ? 502 : 200, { 'content-type': 'application/json' });
      res.end(first ? '{"message":"Bad Gateway"}' : '{}');
    }, 150);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const caller = new AsyncLocalStorage<string[]>();
    const inv = validateInventoryText(GOOD_INVENTORY, '/nowhere/inventory.yaml').inventory!;
    const apis = createApis(inv, { get: async () => 'token' }, { githubUrl: url, retries: 1 }, { onRetry: (m) => caller.getStore()?.push(m) });
    const gh = await apis.github();
    const told = Array.from({ length: 12 }, () => [] as string[]);
    await Promise.all(told.map((mine, i) => caller.run(mine, () => gh.request('GET /repos/{owner}/{repo}', { owner: 'o', repo: `r${i}` }))));
    told.forEach((mine, i) => assert.equal(mine, [`GitHub answered 502 to GET /repos/o/r${i}; retrying in 1s (1/1)`], `caller ${i}`));
  } finally {
    server.close();
  }
});

notices.run();
