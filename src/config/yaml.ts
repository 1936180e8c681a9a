// The policy's YAML, parsed within bounds, every problem with its line. js-yaml builds the plain
// values directly (about 4 bytes of heap per source byte, where a full YAML document model takes
// 60), so the deployed heap (--max-old-space-size=128) parses the largest file allowed. Its
// listener, called as each node opens and closes, enforces the nesting and alias limits while the
// file is parsed and records where each key and value starts, so that a schema problem names its
// line and column.
import { CORE_SCHEMA, load, YAMLException, type State } from 'js-yaml';

/** The largest policy file, refused before it is read. */
export const MAX_POLICY_BYTES = 4_000_000;
/** [ and { inside each other; a policy needs 3, and the parser recurses on each. */
const MAX_FLOW_DEPTH = 64;
/** Aliases a policy may use: each repeats its anchor, so many of them are an attack. */
const MAX_ALIASES = 100;
/**
 * Items in one list, keys in one map: a policy needs fewer (it holds at most 10,000 resources),
 * and the schema reports each wrong item apart, at about 700 bytes of heap each.
 */
const MAX_ENTRIES = 10_000;
/** Values aliases may repeat in all, counting the values inside each anchor. */
const MAX_ALIAS_COPIES = 100_000;

/** A place in the file: line and column from 1, and the offset of its character. */
export interface Position {
  line: number;
  column: number;
  offset: number;
}

export interface ParsedYaml {
  /** The document as plain values. */
  value: unknown;
  /** Where the value at this path starts, if the file holds one there. */
  positionOf(path: readonly PropertyKey[]): Position | undefined;
  /** Where the key of the map entry at this path starts, if the file holds one there. */
  keyPositionOf(path: readonly PropertyKey[]): Position | undefined;
}

export function formatPosition({ line, column }: Position): string {
  return `line ${line}, column ${column}`;
}

export function sizeProblem(bytes: number): string | undefined {
  return bytes > MAX_POLICY_BYTES ? `the file has ${bytes} bytes; a policy may have at most ${MAX_POLICY_BYTES}` : undefined;
}

/** The parsed document, or every problem found (each with its line). */
export function parseYaml(text: string): ParsedYaml | string[] {
  // Characters first: a cheap bound before the exact byte count.
  const tooBig = text.length > MAX_POLICY_BYTES ? sizeProblem(Buffer.byteLength(text)) : undefined;
  if (tooBig) return [tooBig];
  const tracker = new NodeTracker();
  let value: unknown;
  try {
    // The core schema is YAML 1.2's: no timestamps, no << merge keys.
    value = load(text, { schema: CORE_SCHEMA, listener: tracker.listener });
  } catch (err) {
    if (err instanceof Refusal) return [`${formatPosition(tracker.positionAt(err.offset))}: ${err.message}`];
    if (err instanceof YAMLException && err.mark) return [syntaxProblem(err, tracker)];
    throw err;
  }
  return { value, positionOf: (path) => tracker.positionOf(value, path, 'value'), keyPositionOf: (path) => tracker.positionOf(value, path, 'key') };
}

/**
 * js-yaml's problem at the place it names, except where that is only where it gave up: an alias
 * or tag it cannot resolve is named where it starts, and a quote or bracket the file never closes
 * where it opens instead of at the end of the file. A problem inside a [ or { opened on an earlier
 * line names where that opened: often it is the one left unclosed.
 */
function syntaxProblem(err: YAMLException, tracker: NodeTracker): string {
  const reason = err.reason;
  const unclosed = /^unexpected end of the stream within a (flow collection|single quoted scalar|double quoted scalar)$/.exec(reason);
  let start: number | undefined;
  if (unclosed) start = unclosed[1] === 'flow collection' ? tracker.innermostFlowStart() : tracker.innermostNodeStart();
  else if (reason.startsWith('unidentified alias')) start = tracker.lastAlias();
  else if (reason.startsWith('unknown tag') || reason.startsWith('cannot resolve a node with')) start = tracker.innermostNodeStart();
  if (start !== undefined) {
    const message = unclosed ? `this ${tracker.textAt(start)} is never closed: the file ends first` : reason;
    return `${formatPosition(tracker.positionAt(start))}: ${message}`;
  }
  const flow = tracker.innermostFlowStart();
  const opened = flow === undefined ? undefined : tracker.positionAt(flow);
  const inside = opened && opened.line < err.mark.line + 1 ? ` (inside the ${tracker.textAt(flow!)} at ${formatPosition(opened)})` : '';
  return `line ${err.mark.line + 1}, column ${err.mark.column + 1}: ${reason}${inside}`;
}

/** What the listener reads: js-yaml's parser state, with two fields its types leave out. */
type NodeState = State & { depth: number; anchor: string | null };

/** A limit broken at this offset of the text. */
class Refusal extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Follows js-yaml's nodes as they open and close. Each node opens where the text before it ends
 * (after the `:` or `-`), so its own start is found by skipping blanks and comments. js-yaml
 * sometimes opens a second node at the same start while it probes whether a value is a map key;
 * starts tell them apart.
 */
class NodeTracker {
  private input = '';
  private lineStarts: number[] | undefined;
  // One entry per open node, by depth (js-yaml's state.depth, 1 for a document's root).
  /** Where js-yaml opened the node: the end of the text before it. */
  private readonly opened: number[] = [];
  private readonly starts: number[] = [];
  /** The children's values and starts, alternating, when the node has children. */
  private readonly children: (unknown[] | undefined)[] = [];
  /** Values in the node once its aliases are expanded. */
  private readonly sizes: number[] = [];
  /** Aliases in the node once the aliases inside anchors are expanded too. */
  private readonly aliasCounts: number[] = [];
  private readonly aliasNames: (string | undefined)[] = [];
  private readonly countsFlow: boolean[] = [];

  /** Where each collection's children start: indexes give arrays' items, [key, key start, value start, ...] maps'. */
  private readonly childStarts = new Map<object, (string | number)[]>();
  /** js-yaml's state.depth of the innermost node open now (0 outside the document). */
  private depth = 0;
  private readonly anchorSizes = new Map<string, number>();
  private readonly anchorAliasCounts = new Map<string, number>();
  /** Starts of the [ and { collections open now. */
  private readonly flowStarts: number[] = [];
  private lastAliasStart = -1;
  private aliases = 0;
  private expandedAliases = 0;
  private aliasCopies = 0;
  /** The first alias of an anchor that holds aliases itself: the one to name when they multiply. */
  private firstNestedAlias: { start: number; name: string } | undefined;
  private documents = 0;
  private firstDocumentEnd = 0;

  readonly listener = (event: 'open' | 'close', state: State): void => {
    if (event === 'open') this.open(state as NodeState);
    else this.close(state as NodeState);
  };

  private open(state: NodeState): void {
    const depth = state.depth;
    this.input = state.input;
    this.depth = depth;
    if (depth === 1 && ++this.documents > 1) {
      throw new Refusal(this.skipBlanks(this.firstDocumentEnd), 'a policy is one YAML document; this file has more');
    }
    const start = this.skipBlanks(state.position);
    this.opened[depth] = state.position;
    this.starts[depth] = start;
    this.children[depth] = undefined;
    this.sizes[depth] = 1;
    this.aliasCounts[depth] = 0;
    this.aliasNames[depth] = undefined;
    const ch = this.input.charCodeAt(start);
    const flow = (ch === 0x5b /* [ */ || ch === 0x7b /* { */) && this.flowStarts.at(-1) !== start;
    this.countsFlow[depth] = flow;
    if (flow && this.flowStarts.push(start) > MAX_FLOW_DEPTH) throw new Refusal(start, `[ and { nested more than ${MAX_FLOW_DEPTH} deep`);
    if (ch === 0x2a /* * */ && start > this.lastAliasStart) {
      this.lastAliasStart = start;
      this.aliasNames[depth] = this.aliasName(start + 1);
    }
  }

  private close(state: NodeState): void {
    const depth = state.depth;
    this.depth = depth - 1;
    const result: unknown = state.result;
    // A node that took no text (an empty value) is placed where it opened, after its key.
    const start = state.position > this.starts[depth]! ? this.starts[depth]! : this.opened[depth]!;
    if (this.countsFlow[depth]) this.flowStarts.pop();
    const alias = this.aliasNames[depth];
    if (alias !== undefined) this.countAlias(alias, start, depth);
    else if (typeof result === 'object' && result !== null) this.recordChildren(result, this.children[depth], start);
    if (state.anchor !== null) {
      this.anchorSizes.set(state.anchor, this.sizes[depth]!);
      this.anchorAliasCounts.set(state.anchor, this.aliasCounts[depth]!);
    }
    if (depth === 1) {
      this.firstDocumentEnd = state.position;
      return;
    }
    const parent = depth - 1;
    this.sizes[parent]! += this.sizes[depth]!;
    this.aliasCounts[parent]! += this.aliasCounts[depth]!;
    const siblings = (this.children[parent] ??= []);
    // Two entries a list item, four a map pair: past this, either kind has too many.
    if (siblings.push(result, start) > 4 * MAX_ENTRIES) {
      const parentStart = this.starts[parent]!;
      const ch = this.input.charCodeAt(parentStart);
      this.refuseEntries(parentStart, ch === 0x2d /* - */ || ch === 0x5b /* [ */);
    }
  }

  private refuseEntries(start: number, list: boolean): never {
    throw new Refusal(start, `a ${list ? 'list' : 'map'} of more than ${MAX_ENTRIES} ${list ? 'items' : 'keys'}; a policy needs fewer`);
  }

  private countAlias(name: string, start: number, depth: number): void {
    const size = this.anchorSizes.get(name);
    const inside = this.anchorAliasCounts.get(name);
    // js-yaml has resolved the alias, so an anchor not yet closed is one the alias sits inside.
    if (size === undefined || inside === undefined) throw new Refusal(start, `*${name} is inside its own anchor &${name}; a policy cannot refer to itself`);
    if (++this.aliases > MAX_ALIASES) throw new Refusal(start, `more than ${MAX_ALIASES} YAML aliases (this one is *${name}); write the values out`);
    if (inside > 0) this.firstNestedAlias ??= { start, name };
    this.expandedAliases += 1 + inside;
    if (this.expandedAliases > MAX_ALIASES) {
      const nested = this.firstNestedAlias!;
      throw new Refusal(nested.start, `aliases of aliases expand to more than ${MAX_ALIASES} aliases (*${nested.name} repeats aliases of its own; write the values out)`);
    }
    this.aliasCopies += size;
    if (this.aliasCopies > MAX_ALIAS_COPIES) throw new Refusal(start, `aliases repeat more than ${MAX_ALIAS_COPIES} values (this one is *${name}); write the values out`);
    this.sizes[depth] = size;
    this.aliasCounts[depth] = 1 + inside;
  }

  /** Keeps where the children of a new collection start, when they match its items one to one. */
  private recordChildren(collection: object, children: unknown[] | undefined, start: number): void {
    // The same object closes again as an alias, or as the node that probed it as a key.
    if (children === undefined || this.childStarts.has(collection)) return;
    if (Array.isArray(collection)) {
      if (collection.length > MAX_ENTRIES) this.refuseEntries(start, true);
      if (children.length !== collection.length * 2) return;
      const starts: number[] = [];
      for (let i = 1; i < children.length; i += 2) starts.push(children[i] as number);
      this.childStarts.set(collection, starts);
      return;
    }
    // Keys and values alternate; a map's last probe for a key that was not there may follow.
    const pairs = Math.floor(children.length / 4);
    if (pairs > MAX_ENTRIES) this.refuseEntries(start, false);
    if (children.length - pairs * 4 > 2) return;
    const starts: (string | number)[] = [];
    for (let i = 0; i < pairs * 4; i += 4) {
      const key = String(children[i]);
      if (!Object.hasOwn(collection, key)) return;
      starts.push(key, children[i + 1] as number, children[i + 3] as number);
    }
    this.childStarts.set(collection, starts);
  }

  /** Where the value at `path` (or, for a map entry, its key) starts. */
  positionOf(root: unknown, path: readonly PropertyKey[], of: 'key' | 'value'): Position | undefined {
    let value = root;
    let start: number | undefined;
    for (const [i, part] of path.entries()) {
      if (typeof value !== 'object' || value === null) return undefined;
      const starts = this.childStarts.get(value);
      if (!starts) return undefined;
      if (Array.isArray(value)) {
        if (of === 'key' && i === path.length - 1) return undefined;
        start = starts[Number(part)] as number | undefined;
      } else {
        const at = starts.indexOf(String(part));
        start = at % 3 === 0 ? (starts[at + (of === 'key' && i === path.length - 1 ? 1 : 2)] as number) : undefined;
      }
      if (start === undefined) return undefined;
      value = (value as Record<PropertyKey, unknown>)[part];
    }
    return start === undefined ? undefined : this.positionAt(start);
  }

  positionAt(offset: number): Position {
    const starts = (this.lineStarts ??= lineStartsOf(this.input));
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (starts[mid]! <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: offset - starts[low]! + 1, offset };
  }

  /** Where the innermost node open now starts (the parser failed inside it). */
  innermostNodeStart(): number | undefined {
    return this.depth > 0 ? this.starts[this.depth] : undefined;
  }

  innermostFlowStart(): number | undefined {
    return this.flowStarts.at(-1);
  }

  /** Where the last alias the parser met starts (its `*`). */
  lastAlias(): number | undefined {
    return this.lastAliasStart >= 0 ? this.lastAliasStart : undefined;
  }

  textAt(offset: number): string {
    return this.input.charAt(offset);
  }

  /** The offset of the first character after blanks, line breaks and comments. */
  private skipBlanks(offset: number): number {
    const input = this.input;
    for (;;) {
      const ch = input.charCodeAt(offset);
      if (ch === 0x20 || ch === 0x09 || ch === 0x0a || ch === 0x0d) offset++;
      else if (ch === 0x23 /* # */) while (offset < input.length && input.charCodeAt(offset) !== 0x0a) offset++;
      else return offset;
    }
  }

  private aliasName(offset: number): string {
    let end = offset;
    while (end < this.input.length && !' \t\r\n,[]{}\0'.includes(this.input[end]!)) end++;
    return this.input.slice(offset, end);
  }
}

function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) starts.push(at + 1);
  return starts;
}
