// Files shipped beside the code (protos, Lua scripts), found from the package root whether this
// runs from src/ under the test runner or from dist/src/ when built.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${from}`);
    dir = parent;
  }
  return dir;
}

export const packageRoot = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
export const protoDir = join(packageRoot, 'proto');
export const luaDir = join(packageRoot, 'src', 'store', 'redis', 'lua');
