// The Envoy config the sidecar serves: loaded with the policy, then reloaded whenever a file in
// config_dir changes (fs.watch, debounced, so an editor's or a ConfigMap's burst of writes is
// one reload). A reload that finds a bad file keeps the config being served and logs why.
import { existsSync, watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
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
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | undefined;
  private rewatch: NodeJS.Timeout | undefined;
  private closed = false;
  /** A failed watch is logged once, not on every retry. */
  private watchFailing = false;
  private readonly debounceMs: number;
  private readonly rewatchMs: number;

  constructor(
    private readonly settings: EnvoySettings,
    private readonly log: Logger,
    options: EnvoyRuntimeOptions = {},
  ) {
    this.config = settings.initial;
    this.debounceMs = options.debounceMs ?? 200;
    this.rewatchMs = options.rewatchMs ?? 1_000;
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
    this.watch();
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
      // The directory itself went away: its watch is dead; watch for it to come back.
      if (!existsSync(this.settings.configDir) && this.watcher) {
        this.watcher.close();
        this.watcher = null;
        this.scheduleRewatch();
      }
      return false;
    }
    if (loaded.value.fingerprint === this.config.fingerprint) return false;
    this.config = loaded.value;
    this.log.info({ dir: this.settings.configDir, domains: [...loaded.value.domains.keys()], files: loaded.value.files.length }, 'envoy config reloaded');
    return true;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearTimeout(this.rewatch);
    this.watcher?.close();
    this.watcher = null;
  }

  private watch(): void {
    if (this.closed) return;
    try {
      const watcher = watch(this.settings.configDir, { persistent: false }, () => this.changed());
      watcher.on('error', (err) => {
        this.log.warn({ err, dir: this.settings.configDir }, 'watching the envoy config directory failed; watching again');
        watcher.close();
        if (this.watcher === watcher) this.watcher = null;
        this.scheduleRewatch();
      });
      this.watcher = watcher;
      this.watchFailing = false;
    } catch (err) {
      if (!this.watchFailing) this.log.warn({ err, dir: this.settings.configDir }, 'cannot watch the envoy config directory; trying again every second');
      this.watchFailing = true;
      this.scheduleRewatch();
    }
  }

  private scheduleRewatch(): void {
    if (this.closed || this.rewatch) return;
    this.rewatch = setTimeout(() => {
      this.rewatch = undefined;
      this.watch();
      if (this.watcher) this.changed();
    }, this.rewatchMs);
    this.rewatch.unref();
  }

  private changed(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (!this.closed) this.reload();
    }, this.debounceMs);
    this.debounce.unref();
  }
}
