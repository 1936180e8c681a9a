// The Envoy config the sidecar serves: loaded when the sidecar starts (a bad file stops it, named
// with its place), then reloaded whenever a file in config_dir changes (debounced, so an editor's
// or a ConfigMap's burst of writes is one reload). A reload that finds a bad file keeps the
// config being served and logs why.
import type { Logger } from 'pino';
import type { EnvoyOptions } from '../config/policy.js';
import { DirectoryWatch } from '../config/watch.js';
import { loadEnvoyConfig, type EnvoyConfig } from './config.js';

export interface EnvoyRuntimeOptions {
  /** Quiet time after the last change before reloading. Default 200 ms. */
  debounceMs?: number;
  /** How soon to try watching again when the watch fails (the directory was replaced). Default 1 s. */
  rewatchMs?: number;
  /** Told each config a reload swaps in. */
  onChange?: (config: EnvoyConfig) => void;
  /** Told of each reload that found a bad file (the previous config is still served). */
  onRejected?: () => void;
}

/** config_dir does not load: every problem, each prefixed with where config_dir is set in the policy file. */
export class EnvoyConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'EnvoyConfigError';
  }
}

/** The config of config_dir as it is now; throws EnvoyConfigError with every problem in it. */
export function loadEnvoyDirectory(settings: EnvoyOptions): EnvoyConfig {
  const loaded = loadEnvoyConfig(settings);
  if (!loaded.ok) throw new EnvoyConfigError(loaded.problems.map((problem) => `${settings.configDirAt}: ${problem}`));
  return loaded.value;
}

/** Where the Envoy service's config comes from: config_dir (EnvoyRuntime) or xDS (src/grpc/xds-runtime.ts). */
export interface EnvoyConfigSource {
  /** The config to decide with now; read per request. */
  readonly current: EnvoyConfig;
  /** Starts following changes. */
  start(): void;
  close(): void;
}

export class EnvoyRuntime implements EnvoyConfigSource {
  private config: EnvoyConfig;
  private watch: DirectoryWatch | null = null;

  /** Loads config_dir: throws EnvoyConfigError when it does not load. */
  constructor(
    private readonly settings: EnvoyOptions,
    private readonly log: Logger,
    private readonly options: EnvoyRuntimeOptions = {},
  ) {
    this.config = loadEnvoyDirectory(settings);
  }

  /** The config to decide with now; read per request. */
  get current(): EnvoyConfig {
    return this.config;
  }

  /** Starts watching config_dir, and picks up anything that changed since it was loaded. */
  start(): void {
    this.log.info(
      { dir: this.settings.configDir, domains: [...this.config.domains.keys()], files: this.config.files.length },
      'envoy config loaded',
    );
    const dir = this.settings.configDir!;
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
      this.options.onRejected?.();
      return false;
    }
    if (loaded.value.fingerprint === this.config.fingerprint) return false;
    this.config = loaded.value;
    this.log.info({ dir: this.settings.configDir, domains: [...loaded.value.domains.keys()], files: loaded.value.files.length }, 'envoy config reloaded');
    this.options.onChange?.(loaded.value);
    return true;
  }

  close(): void {
    this.watch?.close();
    this.watch = null;
  }
}
