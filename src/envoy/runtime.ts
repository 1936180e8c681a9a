// The Envoy config the sidecar serves: loaded with the policy, then reloaded whenever a file in
// config_dir changes (debounced, so an editor's or a ConfigMap's burst of writes is one reload).
// A reload that finds a bad file keeps the config being served and logs why.
import type { Logger } from 'pino';
import { DirectoryWatch } from '../config/watch.js';
import { loadEnvoyConfig, type EnvoyConfig } from './config.js';
import type { EnvoySettings } from './settings.js';

export interface EnvoyRuntimeOptions {
  /** Quiet time after the last change before reloading. Default 200 ms. */
  debounceMs?: number;
  /** How soon to try watching again when the watch fails (the directory was replaced). Default 1 s. */
  rewatchMs?: number;
}

export class EnvoyRuntime {
  private config: EnvoyConfig;
  private watch: DirectoryWatch | null = null;

  constructor(
    private readonly settings: EnvoySettings,
    private readonly log: Logger,
    private readonly options: EnvoyRuntimeOptions = {},
  ) {
    this.config = settings.initial;
  }

  /** The config to decide with now; read per request. */
  get current(): EnvoyConfig {
    return this.config;
  }

  /** Starts watching config_dir, and picks up anything that changed since the policy was loaded. */
  start(): void {
    this.log.info(
      { dir: this.settings.configDir, domains: [...this.config.domains.keys()], files: this.config.files.length },
      'envoy config loaded',
    );
    const dir = this.settings.configDir;
    this.watch = new DirectoryWatch(dir, {
      debounceMs: this.options.debounceMs ?? 200,
      rewatchMs: this.options.rewatchMs ?? 1_000,
      onChange: () => this.reload(),
      onWatchError: (err) => this.log.warn({ err, dir }, 'cannot watch the envoy config directory; trying again every second'),
    });
    this.reload();
  }

  /**
   * Loads config_dir again. Swaps it in when it is valid and differs from what is served; keeps
   * the old one when a file is bad. Answers whether the config changed.
   */
  reload(): boolean {
    const loaded = loadEnvoyConfig(this.settings);
    if (!loaded.ok) {
      this.log.error({ dir: this.settings.configDir, problems: loaded.problems }, 'envoy config reload failed; still serving the previous config');
      return false;
    }
    if (loaded.value.fingerprint === this.config.fingerprint) return false;
    this.config = loaded.value;
    this.log.info({ dir: this.settings.configDir, domains: [...loaded.value.domains.keys()], files: loaded.value.files.length }, 'envoy config reloaded');
    return true;
  }

  close(): void {
    this.watch?.close();
    this.watch = null;
  }
}
