// Watches a directory and calls back once per burst of changes: fs.watch, debounced, so an
// editor's or the kubelet's burst of writes is one reload (and a directory that is never quiet
// still gets one every few debounces). The directory is watched rather than
// the file because a ConfigMap volume updates by swapping its `..data` symlink: the file's own
// inode never changes. A watch that dies, or that is left on a directory removed or replaced
// (found at each change), is set up again every `rewatchMs`, and a change is assumed when it
// comes back.
import { statSync, watch, type FSWatcher } from 'node:fs';

/** A burst of changes is reported at most this many debounces after its first change. */
const MAX_BURST_DEBOUNCES = 5;

export interface DirectoryWatchOptions {
  /** Quiet time after the last change before `onChange`. */
  debounceMs: number;
  /** How soon to try watching again when the watch fails. */
  rewatchMs: number;
  onChange: () => void;
  /** Told once when watching fails, not on every retry. */
  onWatchError: (err: unknown) => void;
}

export class DirectoryWatch {
  private watcher: FSWatcher | null = null;
  /** The directory the watcher is on, by device, inode and birth time (an inode is reused at once). */
  private watched: string | null = null;
  private debounce: NodeJS.Timeout | undefined;
  /** When the first change of the burst being debounced came. */
  private burstStart = 0;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private failing = false;

  constructor(
    readonly dir: string,
    private readonly options: DirectoryWatchOptions,
  ) {
    this.watch();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearTimeout(this.retry);
    this.watcher?.close();
    this.watcher = null;
  }

  private watch(): void {
    if (this.closed) return;
    try {
      const watcher = watch(this.dir, { persistent: false }, () => this.changed());
      watcher.on('error', (err) => {
        this.failed(err);
        watcher.close();
        if (this.watcher === watcher) this.watcher = null;
        this.scheduleRetry();
      });
      this.watcher = watcher;
      this.watched = this.identity();
      this.failing = false;
    } catch (err) {
      this.failed(err);
      this.scheduleRetry();
    }
  }

  private failed(err: unknown): void {
    if (!this.failing) this.options.onWatchError(err);
    this.failing = true;
  }

  private scheduleRetry(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.watch();
      if (this.watcher) this.changed();
    }, this.options.rewatchMs);
    this.retry.unref();
  }

  /** A change, seen by the watch or reported by the caller (SIGHUP); bursts are reported once. */
  changed(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.debounce === undefined) this.burstStart = now;
    clearTimeout(this.debounce);
    const { debounceMs } = this.options;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (this.closed) return;
      this.rewatchIfReplaced();
      this.options.onChange();
    }, Math.max(0, Math.min(debounceMs, this.burstStart + MAX_BURST_DEBOUNCES * debounceMs - now)));
    this.debounce.unref();
  }

  /**
   * A watch stays on the directory it was set on: removed, or removed and made again under the
   * same name, it would never report another change. Watch what is there now (or, when nothing
   * is, try again every `rewatchMs`).
   */
  private rewatchIfReplaced(): void {
    if (!this.watcher || this.identity() === this.watched) return;
    this.watcher.close();
    this.watcher = null;
    this.watch();
  }

  private identity(): string | null {
    try {
      const stats = statSync(this.dir);
      return `${stats.dev}:${stats.ino}:${stats.birthtimeMs}`;
    } catch {
      return null;
    }
  }
}
