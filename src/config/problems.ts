// A problem the schema found, as `sluice check` prints it: where (the path, with the line and
// column in the file, or the variable that gave the value), the value itself, what was expected,
// and the valid name nearest a misspelt one.
import type { z } from 'zod';
import { nearest } from './nearest.js';
import { formatPosition, type ParsedYaml, type Position } from './yaml.js';

/** The policy as validated, and where its values came from. */
export interface CheckedPolicy {
  /** The file's values, and where each starts. */
  parsed: ParsedYaml;
  /** The values validated: the file's with the environment's overrides applied. */
  raw: unknown;
  /** The variable that gave the value at this path (`SLUICE_LISTEN`), if one did. */
  overriddenBy(path: readonly PropertyKey[]): string | undefined;
}

export interface Problem {
  text: string;
  /** Where in the file it is, to list problems in file order; undefined when it is not in the file. */
  offset: number | undefined;
}

/**
 * The params of a custom issue whose value is not echoed: its message names the value already, or
 * is about how it goes with other fields.
 */
export const NOT_ECHOED = { echo: false };

/** Values echoed in a problem are cut to this many characters. */
const ECHO_LENGTH = 60;
/** Keys whose values are not echoed: problems reach logs and /readyz. */
const SECRET_KEYS = new Set(['password']);

/** `resources[0].limits[1].rate (line 12, column 44): "10/fortnight": the unit must be one of ...` */
export function describeIssue(issue: z.core.$ZodIssue, source: CheckedPolicy): Problem {
  const found = lookUp(source.raw, issue.path);
  const variable = source.overriddenBy(issue.path);
  if (variable !== undefined) return { text: `${formatPath(issue.path)} (from ${variable}): ${messageOf(issue, found)}`, offset: undefined };
  const position =
    issue.code === 'unrecognized_keys'
      ? source.parsed.keyPositionOf([...issue.path, issue.keys[0]!])
      : // A missing value is placed at the map it is missing from.
        source.parsed.positionOf(issue.path.slice(0, found.depth));
  return { text: `${placeText(issue.path, position)}: ${messageOf(issue, found)}`, offset: position?.offset };
}

/** `resources[0].limits[1].rate (line 12, column 44)`: the path, and its place when the file has one. */
export function placeText(path: readonly PropertyKey[], position: Position | undefined): string {
  const named = path.length > 0 ? formatPath(path) : '(top level)';
  return position === undefined ? named : `${named} (${formatPosition(position)})`;
}

function messageOf(issue: z.core.$ZodIssue, found: Found): string {
  const message = plainMessage(issue.message);
  if (issue.code === 'unrecognized_keys') return message;
  if (found.depth < issue.path.length) return message.startsWith('expected ') ? `required (${message.slice('expected '.length)})` : message;
  const value = found.value;
  const guess = typeof value === 'string' ? nearest(value, choicesOf(issue)) : undefined;
  const echoed = issue.code === 'custom' && issue.params?.echo === false ? undefined : echo(value, issue.path);
  return `${echoed === undefined ? '' : `${echoed}: `}${message}${guess ? `; did you mean ${guess}?` : ''}`;
}

/** zod's own wording, `Invalid input: expected string, received null`, as `expected string`. */
function plainMessage(message: string): string {
  return /^Invalid input: (expected \w+), received \w+$/.exec(message)?.[1] ?? message;
}

/** The valid values a problem lists: an enum's, or a union's discriminator's. */
function choicesOf(issue: z.core.$ZodIssue): string[] {
  const choices: unknown[] = issue.code === 'invalid_value' ? issue.values : issue.code === 'invalid_union' ? ((issue as { options?: unknown[] }).options ?? []) : [];
  return choices.filter((choice): choice is string => typeof choice === 'string');
}

/** The value as the problem shows it: quoted and cut short, a secret left out, an empty one said so. */
function echo(value: unknown, path: readonly PropertyKey[]): string | undefined {
  const key = path.at(-1);
  if (typeof key === 'string' && SECRET_KEYS.has(key)) return undefined;
  if (value === null) return 'empty';
  // YAML's .inf and .nan would be echoed as JavaScript spells them, not as the file does.
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined;
  if (typeof value === 'boolean') return String(value);
  if (typeof value !== 'string') return undefined;
  // A url may carry a password before its host.
  const shown = key === 'url' ? value.replace(/\/\/[^/]*@/, '//***@') : value;
  return JSON.stringify(shown.length > ECHO_LENGTH ? `${shown.slice(0, ECHO_LENGTH)}…` : shown);
}

interface Found {
  /** How many parts of the path lead to a value: the path's length when there is one at its end. */
  depth: number;
  /** The value at the end of the path, when there is one. */
  value: unknown;
}

function lookUp(root: unknown, path: readonly PropertyKey[]): Found {
  let value = root;
  for (const [depth, part] of path.entries()) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, part)) return { depth, value: undefined };
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return { depth: path.length, value };
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  return out;
}
