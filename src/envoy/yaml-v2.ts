// How envoyproxy/ratelimit's YAML reader (gopkg.in/yaml.v2) types a plain scalar that looks like
// a number. Upstream checks every value of a config file before it reads the file: a string, a
// whole number, a boolean or null may stand where it reads a string (the number as written), but
// a float or a whole number past int64 fails the check ("error checking config"). So `value: 010`
// is the text "010", while `value: 0.25`, `value: 08` (not octal, so a float) and `value: .inf`
// are refused; in a descriptor's metadata, such a number is a number. sluice's YAML parser types
// some scalars differently (`1:30` is 90 in its YAML 1.1, a string in yaml.v2), so numbers are
// read from the text, as yaml.v2 reads them.

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** yaml.v2's float syntax, after it drops underscores. */
const FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
const SPECIAL_FLOATS = new Map<string, number>([
  ...['.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF'].map((text): [string, number] => [text, Infinity]),
  ...['-.inf', '-.Inf', '-.INF'].map((text): [string, number] => [text, -Infinity]),
  ...['.nan', '.NaN', '.NAN'].map((text): [string, number] => [text, NaN]),
]);
/** Go's strconv.ParseInt with base 0: a sign, then binary, octal (0o or a leading 0), hex or decimal. */
const GO_INT = /^([-+]?)(0[bB][01]+|0[oO][0-7]+|0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/;

export interface YamlV2Number {
  value: number;
  /** A whole number that fits int64: upstream takes it, as written, where it reads a string. */
  int64: boolean;
}

/** The number yaml.v2 reads this plain scalar as, or null when it reads no number (a string, a boolean, a timestamp, null). */
export function yamlV2Number(text: string): YamlV2Number | null {
  const special = SPECIAL_FLOATS.get(text);
  if (special !== undefined) return { value: special, int64: false };
  const first = text[0];
  if (first === '.') return /^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(text) ? { value: Number(text), int64: false } : null;
  if (first === undefined || !/[-+0-9]/.test(first)) return null;
  const plain = text.replaceAll('_', '');
  const int = goInt(plain);
  if (int !== null) return { value: Number(int), int64: int >= INT64_MIN && int <= INT64_MAX };
  return FLOAT.test(plain) ? { value: Number(plain), int64: false } : null;
}

function goInt(text: string): bigint | null {
  const m = GO_INT.exec(text);
  if (!m) return null;
  const digits = m[2]!;
  const lower = digits.toLowerCase();
  let value: bigint;
  if (lower.startsWith('0b') || lower.startsWith('0x') || lower.startsWith('0o')) value = BigInt(lower);
  else if (digits.length > 1 && digits.startsWith('0')) value = BigInt(`0o${digits.slice(1)}`);
  else value = BigInt(digits);
  return m[1] === '-' ? -value : value;
}
