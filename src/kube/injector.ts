// Assembles `sluice inject`: the webhook server and where its certificate comes from (files, or
// the self-managed CA in the Secret shared by the replicas).
import type { Logger } from 'pino';
import type { Lifetimes } from './certificate-secret.js';
import { createAuthority, serviceNames } from './certificates.js';
import { inClusterApi } from './kube-api.js';
import { manageCertificates } from './renewal.js';
import { readKeyPair } from '../config/pem.js';
import { watchKeyPair } from './tls-files.js';
import { startWebhook } from './webhook.js';

const DAY_MS = 86_400_000;

/**
 * Renewed when a third is left: the serving certificate every two months, the CA after about
 * three years and four months (its old self stays trusted until it expires).
 */
export const DEFAULT_LIFETIMES: Lifetimes = { caMs: 5 * 365 * DAY_MS, servingMs: 90 * DAY_MS };
/** Each replica reads the Secret (or the certificate files) this often. */
export const DEFAULT_RESYNC_MS = 60_000;

export interface InjectorConfig {
  listen: string;
  /** The injector's own namespace. */
  namespace: string;
  service: string;
  secret: string;
  webhook: string;
  sidecarImage: string;
  /** Certificate files (cert-manager); null: the self-managed CA in the Secret. */
  tls: { certFile: string; keyFile: string } | null;
  lifetimes: Lifetimes;
  /** How often the Secret, or the certificate files, are read again. */
  resyncMs: number;
  serviceAccountDir: string;
}

export interface Injector {
  address: string;
  stop(): Promise<void>;
}

/** Throws, with a message for the operator, when it cannot start. */
export async function startInjector(config: InjectorConfig, env: NodeJS.ProcessEnv, log: Logger): Promise<Injector> {
  const options = { namespace: config.namespace, defaultImage: config.sidecarImage };
  if (config.tls) {
    const { certFile, keyFile } = config.tls;
    const first = readKeyPair(certFile, keyFile);
    const webhook = await startWebhook(config.listen, first, options, log);
    webhook.setCertificate(first);
    const watch = watchKeyPair(certFile, keyFile, first, config.resyncMs, webhook.setCertificate, log);
    return { address: webhook.address, stop: () => (watch.stop(), webhook.close()) };
  }
  const api = inClusterApi(env, config.serviceAccountDir);
  // Presented only until the Secret is read; no client is meant to trust it.
  const placeholder = await createAuthority('sluice-injector placeholder', new Date(), 24 * 3_600_000);
  const webhook = await startWebhook(config.listen, placeholder, options, log);
  const renewal = manageCertificates({
    api,
    namespace: config.namespace,
    secretName: config.secret,
    webhookName: config.webhook,
    dnsNames: serviceNames(config.service, config.namespace),
    lifetimes: config.lifetimes,
    resyncMs: config.resyncMs,
    log,
    serve: webhook.setCertificate,
  });
  return { address: webhook.address, stop: () => (renewal.stop(), webhook.close()) };
}
