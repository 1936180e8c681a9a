// The process edge: arguments and environment are read in src/cli/ and nowhere else. This file
// picks the command; each runs from a file of its own.
import { PolicyError } from '../config/load.js';
import { parseCommandLine, UsageError } from './args.js';
import { check } from './check.js';
import { packageVersion } from './environment.js';
import { serve } from './serve.js';
import { CHECK_USAGE, SERVE_USAGE, USAGE } from './usage.js';

async function main(argv: string[]): Promise<number> {
  // inject and install have flags of their own, which no other command takes. They are loaded
  // only when run: the Kubernetes code and its certificate library would cost `serve` about
  // 8 MB of RSS and a little garbage collection for nothing.
  if (argv[0] === 'inject') return (await import('./inject.js')).inject(argv.slice(1));
  if (argv[0] === 'install') return (await import('./install.js')).install(argv.slice(1));
  if (argv[0] === 'acquire' || argv[0] === 'release' || argv[0] === 'inspect') return (await import('./call.js')).call(argv[0], argv.slice(1));
  const [command, ...args] = argv;
  switch (command) {
    case 'serve':
      return serve(args);
    case 'check':
      return check(args);
    case 'version':
    case '--version':
    case '-v':
      parseCommandLine(`sluice ${command}`, args, {}, USAGE, 0);
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    case 'help':
    case '--help':
    case '-h':
      return help(args);
    case undefined:
      process.stderr.write(USAGE);
      return 2;
    default:
      throw new UsageError(command.startsWith('-') ? `sluice: unknown option ${command}` : `sluice: unknown command "${command}"`, USAGE);
  }
}

const COMMAND_USAGES: Record<string, string> = { serve: SERVE_USAGE, check: CHECK_USAGE };
const CALLS = ['acquire', 'release', 'inspect'];

/** `sluice help [COMMAND]`: the usage of a command that has one of its own, else every command's. */
async function help(args: string[]): Promise<number> {
  const [command = ''] = parseCommandLine('sluice help', args, {}, USAGE, 1).positionals;
  if (CALLS.includes(command)) process.stdout.write((await import('./call.js')).CALL_USAGE);
  else process.stdout.write(Object.hasOwn(COMMAND_USAGES, command) ? COMMAND_USAGES[command]! : USAGE);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof UsageError) process.stderr.write(`${err.message}\n\n${err.usage}`);
    else process.stderr.write(`sluice: ${err instanceof PolicyError ? err.message : (err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  },
);
