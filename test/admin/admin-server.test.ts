// The admin port, which the injected sidecar opens on every interface for the kubelet's probes
// and Prometheus: any pod in the cluster can reach it, so a client that stalls is cut and the
// connections it may hold are capped.
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/redis-server.js';
import { closesIn } from '../support/sockets.js';
import { useSidecar } from '../support/sidecar.js';

const POLICY = `
resources:
  - { name: api, limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }] }
`;

/** A TCP connection to `address` (host:port), once it is open. */
function opened(address: string): Promise<Socket> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('the admin HTTP server', () => {
  const held = useSidecar(() => POLICY);

  it('cuts a client within 12 s that sends no request, or trickles its headers', async () => {
    const start = Date.now();
    const [idle, slow] = await Promise.all([opened(held.sidecar.admin!), opened(held.sidecar.admin!)]);
    slow.write('GET /metrics HTTP/1.1\r\nhost: x\r\n');
    const timer = setInterval(() => slow.write('x'), 500);
    const closed = await Promise.all([idle, slow].map((socket) => closesIn(socket, start, 14_000)));
    clearInterval(timer);
    for (const ms of closed) expect(ms).toBeLessThan(12_000);
  });

  it('closes connections past 1,000 as they arrive, and answers again once some close', async () => {
    const open: Socket[] = [];
    for (let i = 0; i < 1_000; i += 100) open.push(...(await Promise.all(Array.from({ length: 100 }, () => opened(held.sidecar.admin!)))));
    const extra = connect(Number(held.sidecar.admin!.split(':')[1]), '127.0.0.1');
    expect(await closesIn(extra, Date.now(), 5_000)).toBeLessThan(5_000);
    for (const socket of open) socket.destroy();
    await waitFor('/healthz', 10_000, async () => ((await fetch(`http://${held.sidecar.admin}/healthz`).catch(() => null))?.status === 200 ? true : undefined));
  });
});
