// Directories laid out as the kubelet lays out a ConfigMap's or a Secret's volume, and updated as
// it updates one.
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Keys and their texts: each key a symlink through `..data` to a timestamped directory. */
export class KubeletVolume {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-volume-'));
  private version = 0;
  private current: string | null = null;

  constructor(files: Record<string, string>) {
    chmodSync(this.dir, 0o755); // readable by the sidecar's user, as a volume is
    this.update(files);
    for (const key of Object.keys(files)) symlinkSync(`..data/${key}`, this.path(key));
  }

  path(key: string): string {
    return join(this.dir, key);
  }

  /** The kubelet's atomic writer: write a new directory, point `..data_tmp` at it, rename it over `..data`. */
  update(files: Record<string, string>): void {
    const next = `..2026_11_28_04_00_00.${++this.version}`;
    mkdirSync(join(this.dir, next));
    for (const [key, text] of Object.entries(files)) writeFileSync(join(this.dir, next, key), text);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.current) rmSync(join(this.dir, this.current), { recursive: true });
    this.current = next;
  }
}

/** One key, `policy.yaml`, as the volume of a ConfigMap with that key. */
export class ConfigMapVolume {
  private readonly volume: KubeletVolume;
  readonly dir: string;
  readonly file: string;

  constructor(yaml: string) {
    this.volume = new KubeletVolume({ 'policy.yaml': yaml });
    this.dir = this.volume.dir;
    this.file = this.volume.path('policy.yaml');
  }

  update(yaml: string): void {
    this.volume.update({ 'policy.yaml': yaml });
  }
}
