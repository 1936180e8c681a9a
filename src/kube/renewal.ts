// Keeps the self-managed certificates current: every round reads the shared Secret (renewing it
// when due), serves what it holds, and makes every webhook's caBundle trust its CA. Replicas pick
// up each other's renewals at the next round; an API that fails is tried again soon.
import type { Logger } from 'pino';
import { throttledWarn } from '../log.js';
import { convergeSecret, type Lifetimes } from './certificate-secret.js';
import { parseCertificate, type KeyPair } from './certificates.js';
import type { JsonPatchOp, KubeApi } from './kube-api.js';

export interface RenewalOptions {
  api: KubeApi;
  namespace: string;
  secretName: string;
  webhookName: string;
  dnsNames: string[];
  lifetimes: Lifetimes;
  /** How often the Secret is read again. */
  resyncMs: number;
  log: Logger;
  /** Called whenever the serving certificate to present changes (the first time included). */
  serve(pair: KeyPair): void;
}

/** After a failed round the next comes this soon, twice as late after each further failure, up to the resync. */
const RETRY_MS = 1_000;

export function manageCertificates(options: RenewalOptions): { stop(): void } {
  const { api, log } = options;
  const warn = throttledWarn(log, 30_000);
  let served: string | null = null;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let failures = 0;

  const round = async () => {
    let ok = true;
    try {
      const { material, wrote } = await convergeSecret(api, options.namespace, options.secretName, options.dnsNames, options.lifetimes, () => new Date());
      if (wrote !== null) log.info({ secret: `${options.namespace}/${options.secretName}`, why: wrote }, 'wrote new certificates to the Secret');
      // The CA goes to the API server before a certificate it signed is presented.
      try {
        const patched = await publishCaBundle(api, options.webhookName, material.caBundle.join(''));
        if (patched.length > 0) log.info({ webhookConfiguration: options.webhookName, webhooks: patched }, 'caBundle written');
      } catch (err) {
        ok = false;
        warn({ err: (err as Error).message, webhookConfiguration: options.webhookName }, 'could not write the caBundle; the API server will not trust this webhook until it is written');
      }
      if (material.serving.cert !== served) {
        options.serve(material.serving);
        served = material.serving.cert;
        log.info({ notAfter: parseCertificate(material.serving.cert)?.validTo }, 'serving certificate loaded');
      }
    } catch (err) {
      ok = false;
      warn({ err: (err as Error).message, secret: `${options.namespace}/${options.secretName}` }, 'could not read or renew the certificate Secret');
    }
    failures = ok ? 0 : failures + 1;
    if (!stopped) timer = setTimeout(round, Math.min(options.resyncMs, ok ? Infinity : RETRY_MS * 2 ** Math.min(failures - 1, 16)));
  };
  void round();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * Sets every webhook's clientConfig.caBundle in the configuration to `bundle` where it differs,
 * in one JSON patch whose test ops fail it if the webhooks were reordered since they were read.
 * Resolves with the names of the webhooks it changed.
 */
async function publishCaBundle(api: KubeApi, name: string, bundle: string): Promise<string[]> {
  const config = await api.getWebhookConfiguration(name);
  const wanted = Buffer.from(bundle).toString('base64');
  const ops: JsonPatchOp[] = [];
  const changed: string[] = [];
  (config.webhooks ?? []).forEach((webhook, i) => {
    if (webhook.clientConfig?.caBundle === wanted) return;
    ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: webhook.name });
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: wanted });
    changed.push(webhook.name);
  });
  if (ops.length > 0) await api.patchWebhookConfiguration(name, ops);
  return changed;
}
