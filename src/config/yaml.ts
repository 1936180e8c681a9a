// The policy's YAML, parsed within bounds, every problem with its line. The yaml parser holds
// 500 to 1,000 bytes of heap per value (scalar or collection) while it builds a document, so a
// policy that would not fit the heap is refused with a message while it is parsed, never by a
// V8 abort: the deployed heap (--max-old-space-size=128) holds about 10,000 one-limit resources.
import { getHeapStatistics } from 'node:v8';
import { Composer, isNode, isScalar, LineCounter, Lexer, Parser, visit, type Alias, type CST, type Document } from 'yaml';

/** The largest policy file, refused before it is read: four times what the deployed heap holds. */
export const MAX_POLICY_BYTES = 4_000_000;
/**
 * The parse stops when the heap is this full, leaving room to turn the parsed text into a
 * document (about a third more) and that into values.
 */
const PARSE_HEAP_SHARE = 0.6;
/** Tokens parsed between two looks at the heap. */
const HEAP_CHECK_EVERY = 4096;
/** [ and { inside each other; a policy needs 3, and the parser recurses on each. */
const MAX_FLOW_DEPTH = 64;
/** Aliases a policy may resolve: each copies its anchor, so many of them are an attack. */
const MAX_ALIASES = 100;

export interface ParsedYaml {
  doc: Document;
  lines: LineCounter;
  /** The document as plain values. */
  value: unknown;
}

export function sizeProblem(bytes: number): string | undefined {
  return bytes > MAX_POLICY_BYTES ? `the file has ${bytes} bytes; a policy may have at most ${MAX_POLICY_BYTES}` : undefined;
}

/** The parsed document, or every problem found (each with its line). */
export function parseYaml(text: string): ParsedYaml | string[] {
  // Characters first: a cheap bound before the exact byte count.
  const tooBig = text.length > MAX_POLICY_BYTES ? sizeProblem(Buffer.byteLength(text)) : undefined;
  if (tooBig) return [tooBig];
  const lines = new LineCounter();
  const doc = composeWithin(text, lines);
  if (typeof doc === 'string') return [doc];

  const at = (offset: number) => {
    const pos = lines.linePos(offset);
    return `line ${pos.line}, column ${pos.col}`;
  };
  const problems = doc.errors.map((e) => `${at(e.pos[0])}: ${e.message.split('\n')[0]}`);
  // Duplicate keys are found here in linear time; the parser's own check is quadratic per map.
  visit(doc, {
    Map: (_key, map) => {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        if (seen.has(pair.key.value)) problems.push(`${at(pair.key.range![0])}: Map keys must be unique`);
        seen.add(pair.key.value);
      }
    },
  });
  if (problems.length > 0) return problems;
  const plain = toPlain(doc, lines);
  return typeof plain === 'string' ? [plain] : { doc, lines, value: plain.value };
}

/** parseDocument, watching the heap and the nesting as it goes; a problem when they run out. */
function composeWithin(text: string, lines: LineCounter): Document | string {
  const heapLimit = getHeapStatistics().heap_size_limit * PARSE_HEAP_SHARE;
  const parser = new Parser(lines.addNewLine);
  const tokens: CST.Token[] = [];
  let count = 0;
  let depth = 0;
  lines.addNewLine(0);
  for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) tokens.push(token);
    if (lexeme === '[' || lexeme === '{') {
      if (++depth > MAX_FLOW_DEPTH) return `line ${lines.lineStarts.length}: [ and { nested more than ${MAX_FLOW_DEPTH} deep`;
    } else if (lexeme === ']' || lexeme === '}') depth--;
    if (++count % HEAP_CHECK_EVERY === 0 && getHeapStatistics().used_heap_size > heapLimit) {
      const heapMb = Math.round(getHeapStatistics().heap_size_limit / 1e6);
      return (
        `line ${lines.lineStarts.length}: the policy is too big for this process's heap (${heapMb} MB; ` +
        `--max-old-space-size=128 holds about 10,000 one-limit resources); split it, or raise the heap`
      );
    }
  }
  for (const token of parser.end()) tokens.push(token);
  let doc: Document | undefined;
  for (const next of new Composer({ uniqueKeys: false }).compose(tokens, true, text.length)) {
    if (doc) return `line ${lines.linePos(next.range[0]).line}: a policy is one YAML document; this file has more`;
    doc = next;
  }
  return doc!;
}

/** The document as plain values, or the place where its aliases expand too far. */
function toPlain(doc: Document, lines: LineCounter): { value: unknown } | string {
  const aliases: Alias[] = [];
  visit(doc, { Alias: (_key, node) => void aliases.push(node) });
  const at = (node: Alias) => `line ${lines.linePos(node.range![0]).line}`;
  if (aliases.length > MAX_ALIASES) {
    const first = aliases[MAX_ALIASES]!;
    return `${at(first)}: more than ${MAX_ALIASES} YAML aliases (this one is *${first.source}); write the values out`;
  }
  try {
    return { value: doc.toJS({ maxAliasCount: MAX_ALIASES }) };
  } catch (err) {
    // Fewer aliases still expand past the cap when an anchor holds aliases itself (an alias of
    // an alias multiplies): name the first alias whose anchor does.
    const nested = aliases.find((alias) => containsAlias(alias.resolve(doc))) ?? aliases[0];
    if (!nested) return (err as Error).message;
    return `${at(nested)}: ${(err as Error).message} (*${nested.source} repeats aliases of its own; write the values out)`;
  }
}

function containsAlias(node: unknown): boolean {
  let found = false;
  if (isNode(node)) {
    visit(node, {
      Alias: () => {
        found = true;
        return visit.BREAK;
      },
    });
  }
  return found;
}
