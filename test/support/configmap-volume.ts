// A directory laid out as the kubelet lays out a ConfigMap volume, and updated as it updates one.
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One key, `policy.yaml`, as the volume of a ConfigMap with that key. */
export class ConfigMapVolume {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-configmap-'));
  readonly file = join(this.dir, 'policy.yaml');
  private version = 0;
  private current: string | null = null;

  constructor(yaml: string) {
    chmodSync(this.dir, 0o755); // readable by the sidecar's user, as a volume is
    this.update(yaml);
    symlinkSync('..data/policy.yaml', this.file);
  }

  /** The kubelet's atomic writer: write a new directory, point `..data_tmp` at it, rename it over `..data`. */
  update(yaml: string): void {
    const next = `..2026_11_28_04_00_00.${++this.version}`;
    mkdirSync(join(this.dir, next));
    writeFileSync(join(this.dir, next, 'policy.yaml'), yaml);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.current) rmSync(join(this.dir, this.current), { recursive: true });
    this.current = next;
  }
}
