// The package carries the contract it loads: the build copies sluice/v1/sluice.proto from the
// repository's proto/ (the only source of message shapes) into the package's proto/.
import { cpSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../../../proto/sluice/v1/sluice.proto', import.meta.url));
const to = fileURLToPath(new URL('../proto/sluice/v1/sluice.proto', import.meta.url));
rmSync(fileURLToPath(new URL('../proto', import.meta.url)), { recursive: true, force: true });
cpSync(from, to);
