// Hot reload of the policy file, on a change to its directory (a ConfigMap's `..data` symlink
// swap included) or on SIGHUP. A valid new policy replaces the served resources in one
// assignment, so each request sees the old policy or the new one, never a mix. A bad one keeps
// the old. Resources that did not change keep their objects, and with them their leases; the
// server, store, envoy and tracing sections take effect only at the next start (docs/operations.md,
// "Reloading the policy").
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { loadPolicyFile, PolicyError, type Overrides } from './load.js';
import type { Policy, Resource } from './policy.js';
import { DirectoryWatch } from './watch.js';

export type ReloadResult = 'applied' | 'unchanged' | 'rejected';

export interface ResourceChanges {
  resources: ReadonlyMap<string, Resource>;
  added: string[];
  changed: string[];
  removed: string[];
}

/**
 * The resources to serve after a reload. An unchanged resource keeps the object being served:
 * leases and store plans are kept per object, so only changed resources start them afresh.
 */
export function mergeResources(served: ReadonlyMap<string, Resource>, loaded: ReadonlyMap<string, Resource>): ResourceChanges {
  const resources = new Map<string, Resource>();
  const added: string[] = [];
  const changed: string[] = [];
  for (const [name, next] of loaded) {
    const old = served.get(name);
    if (!old) added.push(name);
    else if (JSON.stringify(old) !== JSON.stringify(next)) changed.push(name);
    resources.set(name, old && !changed.includes(name) ? old : next);
  }
  const removed = [...served.keys()].filter((name) => !loaded.has(name));
  return { resources, added, changed, removed };
}

/** The sections that differ but are read only at start. */
export function restartOnlyChanges(served: Policy, loaded: Policy): string[] {
  // Where config_dir sits in the file is no setting.
  const envoyOptions = (policy: Policy) => (policy.envoy ? { ...policy.envoy, configDirAt: undefined } : null);
  const sections: [string, unknown, unknown][] = [
    ['server', served.server, loaded.server],
    ['store', served.store, loaded.store],
    ['envoy', envoyOptions(served), envoyOptions(loaded)],
    ['tracing', served.tracing, loaded.tracing],
  ];
  return sections.filter(([, a, b]) => JSON.stringify(a) !== JSON.stringify(b)).map(([name]) => name);
}

export interface PolicyReloaderOptions {
  file: string;
  /** The overrides the policy was started with; a reload applies the same. */
  env: Overrides;
  served: Policy;
  log: Logger;
  /** Serves the new resources; called only with a valid policy. */
  apply: (resources: ReadonlyMap<string, Resource>) => void;
  /** Told every reload's result, for the metrics. */
  counted: (result: ReloadResult) => void;
  /** Quiet time after the last change before reloading. Default 200 ms. */
  debounceMs?: number;
  /** How soon to watch again when the watch fails. Default 1 s. */
  rewatchMs?: number;
}

type Trigger = 'change' | 'SIGHUP';

export class PolicyReloader {
  private served: Policy;
  /** A SIGHUP came since the last reload: the next one is logged as its. */
  private signalled = false;
  private lastGood = new Date().toISOString();
  private rejection: string | null = null;
  private readonly watch: DirectoryWatch;

  constructor(private readonly options: PolicyReloaderOptions) {
    this.served = options.served;
    const dir = dirname(options.file);
    this.watch = new DirectoryWatch(dir, {
      debounceMs: options.debounceMs ?? 200,
      rewatchMs: options.rewatchMs ?? 1_000,
      onChange: () => {
        this.reload(this.signalled ? 'SIGHUP' : 'change');
        this.signalled = false;
      },
      onWatchError: (err) => options.log.warn({ err, dir }, 'cannot watch the policy directory; trying again every second (SIGHUP reloads)'),
    });
  }

  /** One line for /readyz: which policy is served, and whether the last reload was refused. */
  get status(): string {
    const served = `policy loaded ${this.lastGood}`;
    return this.rejection ? `${served}; ${this.rejection}, still serving that one` : served;
  }

  /**
   * SIGHUP: read the file again after the same quiet time as a change, so that a storm of signals
   * (each reload parses the whole file: about 0.3 s for a 1.8 MB policy) is one reload.
   */
  requestReload(): void {
    this.signalled = true;
    this.watch.changed();
  }

  private reload(trigger: Trigger): ReloadResult {
    const { file, log } = this.options;
    const result = this.load(trigger);
    this.options.counted(result);
    if (result === 'unchanged') log.debug({ file, trigger }, 'policy unchanged');
    return result;
  }

  close(): void {
    this.watch.close();
  }

  private load(trigger: Trigger): ReloadResult {
    const { file, env, log } = this.options;
    let loaded: Policy;
    try {
      loaded = loadPolicyFile(file, env);
    } catch (err) {
      const problems = err instanceof PolicyError ? err.problems : [(err as Error).message];
      this.rejection = `reload refused at ${new Date().toISOString()}: ${problems[0]}`;
      log.error({ file, trigger, problems }, 'policy reload refused; still serving the previous policy');
      return 'rejected';
    }
    this.rejection = null;
    const changes = mergeResources(this.served.resources, loaded.resources);
    const restartOnly = restartOnlyChanges(this.served, loaded);
    if (restartOnly.length > 0) log.warn({ file, sections: restartOnly }, 'policy sections changed that take effect only at the next start');
    // Later reloads compare against what is served: the start-only sections stay as they were.
    this.served = { ...this.served, resources: changes.resources };
    const { added, changed, removed } = changes;
    if (added.length + changed.length + removed.length === 0) return 'unchanged';
    this.options.apply(changes.resources);
    this.lastGood = new Date().toISOString();
    log.info({ file, trigger, added, changed, removed }, 'policy reloaded');
    return 'applied';
  }
}
