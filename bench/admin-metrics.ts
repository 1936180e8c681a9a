// Reading a sidecar's Prometheus figures from its admin port (/metrics).
import { request } from 'node:http';

/** The /metrics text of the sidecar whose admin HTTP listens on `admin` (host:port). */
export function metricsText(admin: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`http://${admin}/metrics`, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics answered ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('/metrics timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** The value of an unlabelled metric, or NaN when it is not there. */
export function metricValue(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\S+)`, 'm').exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

/** sluice_store_up: 1 while the circuit is closed, 0 while it is open. */
export async function storeUp(admin: string): Promise<number> {
  const value = metricValue(await metricsText(admin), 'sluice_store_up');
  if (Number.isNaN(value)) throw new Error('no sluice_store_up in /metrics');
  return value;
}
