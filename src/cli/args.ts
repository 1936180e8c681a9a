// One command's command line: its options and arguments. What it does not take is refused in one
// line that names it (`sluice serve: unknown option --bogus`), then the command's usage.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { nearest } from '../config/nearest.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** A command line the command does not take: main prints the message, then `usage`, and exits 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * `args` parsed for `command` (`sluice serve`), with at most `maxArguments` arguments besides the
 * options; throws UsageError naming the first thing it does not take.
 */
export function parseCommandLine<const O extends Options>(command: string, args: string[], options: O, usage: string, maxArguments: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    if (!(err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw err;
    throw new UsageError(`${command}: ${whatIsWrong(args, options) ?? (err as Error).message.split('\n')[0]}`, usage);
  }
  const extra = parsed.positionals[maxArguments];
  if (extra !== undefined) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(extra)}`, usage);
  return parsed;
}

/** The first option of `args` that `options` refuses, and why; node's own messages name it less plainly. */
function whatIsWrong(args: string[], options: Options): string | undefined {
  const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const option = options[token.name];
    if (option === undefined) {
      const guess = nearest(token.rawName, Object.entries(options).flatMap(([name, { short }]) => (short ? [`--${name}`, `-${short}`] : [`--${name}`])));
      return `unknown option ${token.rawName}${guess ? ` (did you mean ${guess}?)` : ''}`;
    }
    if (option.type === 'boolean' && token.inlineValue) return `${token.rawName} takes no value`;
    if (option.type === 'string' && (token.value === undefined || (!token.inlineValue && token.value.startsWith('-')))) return `${token.rawName} needs a value`;
  }
  return undefined;
}
