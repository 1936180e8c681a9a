// The Envoy config served from an xDS management server (envoy.xds) instead of config_dir. It
// starts with no domain and takes each response the server sends: a response whose resources
// are all valid is swapped in as a config file reload is (budgets of the domains continue);
// one with a bad resource is refused (NACKed) and the config served stays.
import type { Logger } from 'pino';
import type { EnvoyOptions, XdsOptions } from '../config/policy.js';
import type { EnvoyConfig } from '../envoy/config.js';
import type { EnvoyConfigSource, EnvoyRuntimeOptions } from '../envoy/runtime.js';
import { configFromXds, emptyXdsConfig, RATE_LIMIT_CONFIG_TYPE, type RateLimitConfigMessage } from '../envoy/xds-config.js';
import { XdsClient } from './xds-client.js';

export class XdsRuntime implements EnvoyConfigSource {
  private config: EnvoyConfig;
  private client: XdsClient | null = null;
  private readonly xds: XdsOptions;

  constructor(
    private readonly settings: EnvoyOptions,
    private readonly log: Logger,
    private readonly options: Pick<EnvoyRuntimeOptions, 'onChange' | 'onRejected'> = {},
  ) {
    if (!settings.xds) throw new Error('XdsRuntime: envoy.xds is not set');
    this.xds = settings.xds;
    this.config = emptyXdsConfig(settings);
  }

  get current(): EnvoyConfig {
    return this.config;
  }

  /** Connects to the management server, and keeps connecting until it answers. */
  start(): void {
    this.log.info({ server: this.xds.server, node: this.xds.nodeId }, 'envoy config from xDS: serving no domain until the management server sends one');
    this.client = new XdsClient({ xds: this.xds, typeUrl: RATE_LIMIT_CONFIG_TYPE, log: this.log, accept: (resources, version) => this.apply(resources, version) });
    this.client.start();
  }

  /** Swaps in the config of these resources when all are valid; else every problem. */
  apply(resources: RateLimitConfigMessage[], version: string): string[] {
    const loaded = configFromXds(resources, this.settings);
    const server = this.xds.server;
    if (!loaded.ok) {
      this.log.error({ server, version, problems: loaded.problems }, 'envoy config from xDS refused; still serving the previous config');
      this.options.onRejected?.();
      return loaded.problems;
    }
    if (loaded.value.fingerprint === this.config.fingerprint) return [];
    this.config = loaded.value;
    this.log.info({ server, version, domains: [...loaded.value.domains.keys()].sort(), resources: loaded.value.files.length }, 'envoy config reloaded');
    this.options.onChange?.(loaded.value);
    return [];
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }
}
