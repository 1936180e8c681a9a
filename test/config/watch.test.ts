// DirectoryWatch on a directory that is removed and made again, as a deploy script or an
// operator's `rm -rf && mkdir` does: changes made in the new directory still reach onChange.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectoryWatch } from '../../src/config/watch.js';

/** onChange calls, each one resolving the next wait. */
function changes() {
  let count = 0;
  let waiters: (() => void)[] = [];
  return {
    onChange: () => {
      count++;
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
    get count() {
      return count;
    },
    /** Resolves once there have been `n` changes in all; rejects after `ms`. */
    until(n: number, ms: number): Promise<void> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${count} changes after ${ms} ms, expected ${n}`)), ms);
        const check = () => (count >= n ? (clearTimeout(timer), resolve()) : waiters.push(check));
        check();
      });
    },
  };
}

describe('DirectoryWatch', () => {
  let watch: DirectoryWatch | undefined;
  afterEach(() => watch?.close());

  it('reports a directory that is never quiet (a chatty neighbour of the policy file) within five debounces', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-watch-'));
    const seen = changes();
    watch = new DirectoryWatch(dir, { debounceMs: 100, rewatchMs: 100, onChange: seen.onChange, onWatchError: () => undefined });
    let writing = true;
    const chatter = (async () => {
      for (let i = 0; writing; i++) {
        writeFileSync(join(dir, 'status'), String(i));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      // Writes every 20 ms never leave 100 ms of quiet; the burst is reported anyway.
      await seen.until(2, 3_000);
    } finally {
      writing = false;
      await chatter;
    }
  });

  for (const [what, replace] of [
    ['at once', (dir: string) => (rmSync(dir, { recursive: true }), mkdirSync(dir))],
    ['a while later', null],
  ] as const) {
    it(`sees changes in a directory removed and made again ${what}`, async () => {
      const dir = join(mkdtempSync(join(tmpdir(), 'sluice-watch-')), 'policy');
      mkdirSync(dir);
      writeFileSync(join(dir, 'policy.yaml'), 'one');
      const seen = changes();
      watch = new DirectoryWatch(dir, { debounceMs: 50, rewatchMs: 100, onChange: seen.onChange, onWatchError: () => undefined });
      if (replace) replace(dir);
      else {
        rmSync(dir, { recursive: true });
        await seen.until(1, 5_000);
        mkdirSync(dir);
      }
      writeFileSync(join(dir, 'policy.yaml'), 'two');
      await seen.until(seen.count + 1, 5_000);
      // The watch is on the new directory: a later edit is seen too.
      const before = seen.count;
      writeFileSync(join(dir, 'policy.yaml'), 'three');
      await seen.until(before + 1, 5_000);
      expect(seen.count).toBeGreaterThan(before);
    });
  }
});
