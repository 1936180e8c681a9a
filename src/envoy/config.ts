// envoyproxy/ratelimit's YAML configuration, read unchanged: one domain per file, descriptors
// nested to any depth, exact and wildcard values (`*` anywhere), key-only defaults, rate_limit
// with unit, requests_per_unit, unlimited, name and replaces, shadow_mode, quota_mode, metadata,
// share_threshold, detailed_metric and value_to_metric. Plus
// sluice's own keys, all prefixed `sluice_` so a file that uses none stays loadable by upstream.
//
// Every rate_limit is compiled here, once per load, into a sluice Resource (fixed_window with the
// unit's epoch-aligned period, unless a sluice extension says otherwise). Every problem in every
// file is reported at once, with its file, its place in the file and its line.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Document, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode, type Pair, type Scalar, type YAMLMap, type YAMLSeq } from 'yaml';
import type { EnvoyOptions, Limit, Resource } from '../config/policy.js';
import { parseUnit, unitMs, type Unit } from './units.js';
import { yamlV2Number } from './yaml-v2.js';
import { setEntry, type Metadata, type MetadataValue } from './metadata.js';

export type EnvoyAlgorithm = 'fixed_window' | 'token_bucket' | 'sliding_window';
const ALGORITHMS: readonly EnvoyAlgorithm[] = ['fixed_window', 'token_bucket', 'sliding_window'];
const ALGORITHM_TAG: Readonly<Record<EnvoyAlgorithm, string>> = { fixed_window: 'fw', token_bucket: 'tb', sliding_window: 'sw' };

/** One limit of a descriptor: upstream's rate_limit, or an entry of sluice_limits. */
export interface LimitSpec {
  unit: Unit;
  requestsPerUnit: number;
  algorithm: EnvoyAlgorithm;
  /** token_bucket only: how many at once; default requests_per_unit. */
  burst: number | null;
}

/** What current_limit says: a limit as Envoy knows them (token buckets report their rate). */
export interface ReportedLimit {
  requestsPerUnit: number;
  unit: Unit;
}

export interface Rule {
  /**
   * Where the rule sits: per level, its descriptor as upstream's stats key names it, `key_value`
   * or `key` for a key-only one (upstream's key is the domain and these, joined by dots).
   */
  levels: readonly string[];
  /** The levels joined by dots: the `rule` label of its statistics. */
  label: string;
  /** rate_limit.name: what `replaces` refers to, and current_limit.name. Empty when unnamed. */
  name: string;
  replaces: readonly string[];
  unlimited: boolean;
  shadow: boolean;
  /** quota_mode: over its limit, it makes the request OVER_LIMIT only if every quota descriptor of the request is over. */
  quota: boolean;
  /** The descriptor's metadata, returned in the answer's dynamic metadata when it passes; null when it has none. */
  metadata: Metadata | null;
  /** detailed_metric: its statistics are labelled with the request's values (src/envoy/stats.ts). */
  detailedMetric: boolean;
  /** rate_limit's own requests_per_unit and unit; null when unlimited. */
  main: ReportedLimit | null;
  /** Null when unlimited, or when requests_per_unit is 0 (every request is over the limit). */
  resource: Resource | null;
  /** Each limit of the resource by its name: what current_limit reports when that limit decides. */
  reported: ReadonlyMap<string, ReportedLimit>;
  /** The limits' algorithms and units, `fw_minute+tb_second`: the end of the scope (see scopeOf in match.ts). */
  shapeTag: string;
}

/** What a rule takes from its descriptor and its rate_limit, besides the limits. */
type RuleHead = Pick<Rule, 'levels' | 'name' | 'replaces' | 'shadow' | 'quota' | 'metadata' | 'detailedMetric'>;

/** One level of a domain's descriptor tree. */
export interface DescriptorNode {
  /** key -> value -> node. Wildcard values are here too, under their literal text. */
  exact: Map<string, Map<string, DescriptorNode>>;
  /** Descriptors with a key and no value: the default for any value. */
  keyOnly: Map<string, DescriptorNode>;
  /** Values with a `*`, in file order: the first that matches wins (see matchesWildcard in match.ts). */
  wildcards: { key: string; parts: readonly string[]; node: DescriptorNode }[];
  rule: Rule | null;
  /** share_threshold: every value this wildcard matches shares one budget, kept under this value. */
  sharedValue: string | null;
  /** value_to_metric: a value matched by the key alone or by a wildcard names this level in the statistics. */
  valueToMetric: boolean;
  hasChildren: boolean;
}

export interface Domain {
  name: string;
  /** The file it comes from, or (from xDS) its resource, as problems name it. */
  file: string;
  /** The line of the file that names the domain; 0 when it does not come from a file. */
  line: number;
  root: DescriptorNode;
}

export interface EnvoyConfig {
  options: EnvoyOptions;
  domains: ReadonlyMap<string, Domain>;
  /** The files read (or, from xDS, the resources' names). */
  files: readonly string[];
  /** Changes when any file's name or text does (from xDS: any resource). */
  fingerprint: string;
  /** Rules for descriptors that carry a limit override, made on first use; bounded. */
  overrides: Map<string, Rule>;
}

export type Loaded<T> = { ok: true; value: T } | { ok: false; problems: string[] };

// ---------------------------------------------------------------------------------------------
// Loading a directory

/** Loads every domain file of options.configDir; all problems of all files, or the config. */
export function loadEnvoyConfig(options: EnvoyOptions): Loaded<EnvoyConfig> {
  const dir = options.configDir;
  if (dir === null) throw new Error('loadEnvoyConfig: no config_dir (this Envoy config comes from xDS)');
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((entry) => !entry.name.startsWith('.') && /\.ya?ml$/i.test(entry.name))
      .map((entry) => entry.name)
      .sort();
  } catch (err) {
    return { ok: false, problems: [`cannot read the directory ${dir}: ${readError(err)}`] };
  }
  const problems: string[] = [];
  const parsed: Loaded<Domain>[] = [];
  const files: string[] = [];
  const hash = createHash('sha256');
  const trees = domainTrees(options);
  for (const name of names) {
    const file = join(dir, name);
    let text: string;
    try {
      // Follows symlinks (a Kubernetes ConfigMap volume is made of them); skips directories.
      if (!statSync(file).isFile()) continue;
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push(`${file}: cannot read: ${readError(err)}`);
      continue;
    }
    files.push(file);
    hash.update(name).update('\u0000').update(text).update('\u0000');
    parsed.push(parseDomainFile(text, file, options, trees));
  }
  return assembleConfig(options, parsed, problems, files, hash.digest('hex'), 'file');
}

/**
 * The config of these domains (each a file's, or an xDS resource's), or every problem: those
 * found before (`problems`), each domain's, and a domain given twice.
 */
export function assembleConfig(
  options: EnvoyOptions,
  parsed: readonly Loaded<Domain>[],
  problems: string[],
  files: readonly string[],
  fingerprint: string,
  each: 'file' | 'resource',
): Loaded<EnvoyConfig> {
  const domains = new Map<string, Domain>();
  for (const domain of parsed) {
    if (!domain.ok) {
      problems.push(...domain.problems);
      continue;
    }
    const { name, file, line } = domain.value;
    const other = domains.get(name);
    // Merged (merge_domains): a later file's descriptors are already in the first one's tree.
    if (other?.root === domain.value.root) continue;
    if (other) {
      problems.push(`${file}: domain${line > 0 ? ` (line ${line})` : ''}: duplicate domain '${name}' (also in ${other.file}): one ${each} per domain, unless merge_domains is on`);
      continue;
    }
    domains.set(name, domain.value);
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, value: { options, domains, files, fingerprint, overrides: new Map() } };
}

function readError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'not a directory';
  return (err as Error).message;
}

// ---------------------------------------------------------------------------------------------
// Parsing one file

type Path = (string | number)[];

const TOP_KEYS = ['domain', 'descriptors'];
const DESCRIPTOR_KEYS = ['key', 'value', 'rate_limit', 'descriptors', 'shadow_mode', 'quota_mode', 'metadata', 'detailed_metric', 'value_to_metric', 'share_threshold'];
const RATE_LIMIT_KEYS = ['unit', 'requests_per_unit', 'unlimited', 'name', 'replaces', 'sluice_algorithm', 'sluice_burst', 'sluice_limits'];
const REPLACES_KEYS = ['name'];
const EXTRA_LIMIT_KEYS = ['unit', 'requests_per_unit', 'sluice_algorithm', 'sluice_burst'];

/** Where a known key belongs, for a key found in the wrong place. */
const BELONGS: Record<string, string> = {
  domain: 'at the top of the file',
  ...Object.fromEntries(DESCRIPTOR_KEYS.map((k) => [k, 'in a descriptor'])),
  ...Object.fromEntries(RATE_LIMIT_KEYS.map((k) => [k, 'under rate_limit'])),
};

class Reader {
  readonly problems: string[] = [];
  constructor(
    readonly file: string,
    /** Null for a tree that is not a file's (an xDS resource): its problems name no line. */
    private readonly lines: LineCounter | null,
  ) {}

  fail(path: Path, node: unknown, message: string): void {
    const range = (node as YamlNode | null | undefined)?.range;
    const line = range && this.lines ? ` (line ${this.lines.linePos(range[0]).line})` : '';
    this.problems.push(`${this.file}: ${formatPath(path) || '(top level)'}${line}: ${message}`);
  }
}

export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}

/** A domain file's text as a domain tree, or every problem in it. */
/**
 * With merge_domains, the one tree of each domain, for every file (or resource) that names it to
 * add its descriptors to, so that a descriptor two of them have is a duplicate found (and placed)
 * as within one file. Without it, none: each file's domain has a tree of its own.
 */
export function domainTrees(options: EnvoyOptions): DomainTrees | undefined {
  if (!options.mergeDomains) return undefined;
  const trees = new Map<string, DescriptorNode>();
  return (domain) => {
    let tree = trees.get(domain);
    if (!tree) trees.set(domain, (tree = newNode()));
    return tree;
  };
}

export type DomainTrees = (domain: string) => DescriptorNode;

/** `trees`: where each domain's descriptors go (domainTrees); a tree of its own without. */
export function parseDomainFile(text: string, file: string, options: EnvoyOptions, trees?: DomainTrees): Loaded<Domain> {
  const lines = new LineCounter();
  // YAML 1.1, as upstream's yaml.v2 reads it (yes/no/on/off are booleans).
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, version: '1.1' });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const at = lines.linePos(e.pos[0]);
        return `${file}: line ${at.line}, column ${at.col}: ${e.message.split('\n')[0]}`;
      }),
    };
  }
  return readDomain(doc.contents, file, lines, options, trees);
}

/**
 * A domain given as data rather than text (an xDS resource, as a config file's tree): read by
 * the same rules as a file, its problems named by `source` and their place in the tree.
 */
export function parseDomainTree(tree: unknown, source: string, options: EnvoyOptions, trees?: DomainTrees): Loaded<Domain> {
  const doc = new Document(tree, { version: '1.1', aliasDuplicateObjects: false });
  return readDomain(doc.contents as YamlNode | null, source, null, options, trees);
}

function readDomain(root: YamlNode | null, file: string, lines: LineCounter | null, options: EnvoyOptions, trees?: DomainTrees): Loaded<Domain> {
  const r = new Reader(file, lines);
  let domain = '';
  let line = 0;
  let tree = newNode();
  if (root !== null && !isMap(root) && !(isScalar(root) && root.value === null)) {
    r.fail([], root, 'expected a map with domain and descriptors');
  } else {
    const fields = isMap(root) ? readFields(r, root, [], TOP_KEYS) : new Map<string, Field>();
    const named = readString(r, fields.get('domain'), ['domain']);
    const namedAt = fields.get('domain')?.value?.range;
    if (lines) line = namedAt ? lines.linePos(namedAt[0]).line : 1;
    domain = named ?? '';
    if (named === '' || !fields.has('domain')) r.fail(['domain'], fields.get('domain')?.value ?? root, 'config file cannot have empty domain');
    if (trees && domain !== '') tree = trees(domain);
    readDescriptors(r, fields.get('descriptors'), ['descriptors'], [], tree, { domain, options });
  }
  if (r.problems.length > 0) return { ok: false, problems: r.problems };
  return { ok: true, value: { name: domain, file, line, root: tree } };
}

interface Field {
  key: YamlNode;
  value: YamlNode | null;
}

interface Context {
  domain: string;
  options: EnvoyOptions;
}

function newNode(): DescriptorNode {
  return { exact: new Map(), keyOnly: new Map(), wildcards: [], rule: null, sharedValue: null, valueToMetric: false, hasChildren: false };
}

/** A map's entries by key, reporting keys that are not strings or not allowed here. */
function readFields(r: Reader, map: YAMLMap, path: Path, allowed: readonly string[]): Map<string, Field> {
  const fields = new Map<string, Field>();
  for (const pair of map.items as Pair<YamlNode, YamlNode | null>[]) {
    const keyNode = pair.key;
    const key = isScalar(keyNode) ? keyNode.value : undefined;
    if (typeof key !== 'string') {
      r.fail(path, keyNode, `config error, key is not of type string: ${textOf(keyNode)}`);
      continue;
    }
    if (!allowed.includes(key)) {
      const hint = BELONGS[key] ? ` (${key} belongs ${BELONGS[key]})` : '';
      r.fail(path, keyNode, `unknown key "${key}"${hint}`);
      continue;
    }
    fields.set(key, { key: keyNode, value: pair.value ?? null });
  }
  return fields;
}

/** A node as the file writes it, for a problem's message; a collection by its kind. */
function textOf(node: YamlNode | null): string {
  if (isScalar(node)) return node.source ?? String(node.value);
  return isSeq(node) ? 'a list' : node === null ? 'null' : 'a collection';
}

function isNull(node: YamlNode | null | undefined): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/**
 * A string field, as yaml.v2 fills one: a scalar as written (`value: 010` is "010"); null is "".
 * Undefined (reported) for a collection, and for a number upstream refuses (see yaml-v2.ts).
 */
function readString(r: Reader, field: Field | undefined, path: Path): string | undefined {
  if (!field || isNull(field.value)) return field ? '' : undefined;
  const node = field.value!;
  if (!isScalar(node)) {
    r.fail(path, node, 'expected a string');
    return undefined;
  }
  const text = node.source ?? String(node.value);
  if (node.type === 'PLAIN' && yamlV2Number(text)?.int64 === false) {
    r.fail(path, node, `expected a string, not the number ${text} (envoyproxy/ratelimit refuses it too); quote it to mean the text: "${text}"`);
    return undefined;
  }
  return typeof node.value === 'string' ? node.value : text;
}

function readBool(r: Reader, field: Field | undefined, path: Path): boolean {
  if (!field || isNull(field.value)) return false;
  const node = field.value!;
  if (isScalar(node) && typeof node.value === 'boolean') return node.value;
  r.fail(path, node, 'expected true or false');
  return false;
}

/** A whole number from min to max, or undefined (reported) when it is not one; null is 0. */
function readInt(r: Reader, field: Field | undefined, path: Path, min: number, max: number): number | undefined {
  if (!field || isNull(field.value)) return field ? 0 : undefined;
  const node = field.value!;
  const value = isScalar(node) ? node.value : undefined;
  const source = isScalar(node) ? (node.source ?? '') : '';
  const whole = typeof value === 'number' && Number.isInteger(value) && (/^[-+]?0x/i.test(source) || !/[.eE]/.test(source));
  if (!whole || (value as number) < min || (value as number) > max) {
    r.fail(path, node, `expected a whole number from ${min} to ${max}`);
    return undefined;
  }
  return value as number;
}

function readSeq(r: Reader, field: Field | undefined, path: Path, what: string): YAMLSeq<YamlNode | null> | null {
  if (!field || isNull(field.value)) return null;
  if (!isSeq(field.value)) {
    r.fail(path, field.value, `expected a list of ${what}`);
    return null;
  }
  return field.value as YAMLSeq<YamlNode | null>;
}

/** A descriptor's metadata: a map of any YAML (upstream does not check it), or null when absent or empty. */
function readMetadata(r: Reader, field: Field | undefined, path: Path): Metadata | null {
  if (!field || isNull(field.value)) return null;
  if (!isMap(field.value)) {
    r.fail(path, field.value, 'expected a map of metadata');
    return null;
  }
  const metadata = metadataValue(r, field.value, path) as Metadata;
  return Object.keys(metadata).length > 0 ? metadata : null;
}

/** A YAML node as a protobuf Struct value, typed as yaml.v2 types it. */
function metadataValue(r: Reader, node: YamlNode | null, path: Path): MetadataValue {
  if (isNull(node)) return null;
  if (isMap(node)) {
    const map: Metadata = {};
    for (const pair of node.items as Pair<YamlNode, YamlNode | null>[]) {
      if (!isScalar(pair.key)) {
        r.fail(path, pair.key, 'expected a string, number or boolean as a metadata key');
        continue;
      }
      const key = pair.key.source ?? String(pair.key.value);
      setEntry(map, key, metadataValue(r, pair.value, [...path, key]));
    }
    return map;
  }
  if (isSeq(node)) return node.items.map((item, i) => metadataValue(r, item as YamlNode | null, [...path, i]));
  if (!isScalar(node)) {
    r.fail(path, node, 'expected a map, a list or a scalar (YAML aliases are not read)');
    return null;
  }
  const scalar: Scalar = node;
  const text = scalar.source ?? String(scalar.value);
  if (scalar.type === 'PLAIN') {
    const number = yamlV2Number(text);
    if (number) return number.value;
  }
  if (typeof scalar.value === 'boolean' || typeof scalar.value === 'string') return scalar.value;
  // A number given as data (an xDS resource's Struct), not written in a file.
  if (typeof scalar.value === 'number' && scalar.source === undefined) return scalar.value;
  // Anything else (a timestamp, a sexagesimal, binary) is its text, as yaml.v2 leaves it.
  return text;
}

const UINT32_MAX = 0xffff_ffff;

function readDescriptors(r: Reader, field: Field | undefined, path: Path, parentLevels: readonly string[], into: DescriptorNode, ctx: Context): void {
  const seq = readSeq(r, field, path, 'descriptors');
  if (!seq) return;
  seq.items.forEach((item, i) => {
    const at = [...path, i];
    if (!isMap(item)) {
      r.fail(at, item ?? seq, `config error, yaml file contains list of type other than map: ${textOf(item)} (expected a descriptor: key, value, rate_limit, descriptors)`);
      return;
    }
    const fields = readFields(r, item, at, DESCRIPTOR_KEYS);
    const keyText = readString(r, fields.get('key'), [...at, 'key']) ?? (fields.has('key') ? undefined : '');
    const valueText = readString(r, fields.get('value'), [...at, 'value']) ?? (fields.has('value') ? undefined : '');
    const shadow = readBool(r, fields.get('shadow_mode'), [...at, 'shadow_mode']);
    const quota = readBool(r, fields.get('quota_mode'), [...at, 'quota_mode']);
    const metadata = readMetadata(r, fields.get('metadata'), [...at, 'metadata']);
    const detailedMetric = readBool(r, fields.get('detailed_metric'), [...at, 'detailed_metric']);
    const valueToMetric = readBool(r, fields.get('value_to_metric'), [...at, 'value_to_metric']);
    const share = readBool(r, fields.get('share_threshold'), [...at, 'share_threshold']);
    if (keyText === '') r.fail([...at, 'key'], fields.get('key')?.value ?? item, 'descriptor has empty key');
    if (!keyText || valueText === undefined) return;
    const key = keyText;
    const value = valueText;
    const finalKey = value === '' ? key : `${key}_${value}`;
    const levels = [...parentLevels, finalKey];
    const duplicate = value === '' ? into.keyOnly.has(key) : (into.exact.get(key)?.has(value) ?? false);
    if (duplicate) r.fail(at, item, `duplicate descriptor composite key '${[ctx.domain, ...levels].join('.')}'`);
    const wildcard = value.includes('*');
    if (share && !wildcard) {
      r.fail([...at, 'share_threshold'], fields.get('share_threshold')!.value, `share_threshold can only be used with wildcard values (containing '*'), but found key '${finalKey}'`);
    }

    const node = newNode();
    const rateLimit = fields.get('rate_limit');
    if (rateLimit && !isNull(rateLimit.value)) node.rule = readRateLimit(r, rateLimit.value!, [...at, 'rate_limit'], { levels, shadow, quota, metadata, detailedMetric }, ctx);
    node.sharedValue = share && wildcard ? value : null;
    node.valueToMetric = valueToMetric;
    readDescriptors(r, fields.get('descriptors'), [...at, 'descriptors'], levels, node, ctx);
    node.hasChildren = node.exact.size > 0 || node.keyOnly.size > 0;
    if (duplicate) return;

    if (value === '') {
      into.keyOnly.set(key, node);
    } else {
      let values = into.exact.get(key);
      if (!values) into.exact.set(key, (values = new Map()));
      values.set(value, node);
      if (wildcard) into.wildcards.push({ key, parts: value.split('*'), node });
    }
  });
}

function readRateLimit(r: Reader, node: YamlNode, path: Path, descriptor: Omit<RuleHead, 'name' | 'replaces'>, ctx: Context): Rule | null {
  if (!isMap(node)) {
    r.fail(path, node, 'expected a map (unit, requests_per_unit, ...)');
    return null;
  }
  const before = r.problems.length;
  const fields = readFields(r, node, path, RATE_LIMIT_KEYS);
  const unlimited = readBool(r, fields.get('unlimited'), [...path, 'unlimited']);
  const unitText = readString(r, fields.get('unit'), [...path, 'unit']) ?? '';
  const unit = parseUnit(unitText);
  const requestsPerUnit = readInt(r, fields.get('requests_per_unit'), [...path, 'requests_per_unit'], 0, UINT32_MAX) ?? 0;
  const name = readString(r, fields.get('name'), [...path, 'name']) ?? '';

  const replaces: string[] = [];
  const replacesSeq = readSeq(r, fields.get('replaces'), [...path, 'replaces'], 'replaces entries ({ name: ... })');
  replacesSeq?.items.forEach((item, i) => {
    const at = [...path, 'replaces', i];
    if (!isMap(item)) {
      r.fail(at, item ?? replacesSeq, `config error, yaml file contains list of type other than map: ${textOf(item)} (expected { name: ... })`);
      return;
    }
    const replaced = readString(r, readFields(r, item, at, REPLACES_KEYS).get('name'), [...at, 'name']) ?? '';
    if (replaced === '') r.fail(at, item, 'should not have an empty replaces entry');
    else if (replaced === name) r.fail(at, item, 'replaces should not contain name of same descriptor');
    else replaces.push(replaced);
  });

  if (unlimited) {
    if (unit) r.fail([...path, 'unit'], fields.get('unit')!.value, 'should not specify rate limit unit when unlimited');
    for (const key of ['sluice_algorithm', 'sluice_burst', 'sluice_limits']) {
      if (fields.has(key)) r.fail([...path, key], fields.get(key)!.key, `${key} does not apply to an unlimited rate_limit`);
    }
    if (r.problems.length > before) return null;
    return { ...descriptor, label: descriptor.levels.join('.'), name, replaces, unlimited: true, main: null, resource: null, reported: new Map(), shapeTag: '' };
  }
  if (!unit) {
    r.fail([...path, 'unit'], fields.get('unit')?.value ?? node, `invalid rate limit unit '${unitText}'`);
  }
  const main = readAlgorithm(r, fields, path, unit, requestsPerUnit);

  const limits: LimitSpec[] = main && unit ? [{ unit, requestsPerUnit, ...main }] : [];
  const extras = readSeq(r, fields.get('sluice_limits'), [...path, 'sluice_limits'], 'limits ({ unit, requests_per_unit, ... })');
  if (extras && requestsPerUnit === 0) {
    r.fail([...path, 'sluice_limits'], fields.get('sluice_limits')!.key, 'requests_per_unit 0 blocks every request, so sluice_limits would never apply');
  }
  extras?.items.forEach((item, i) => {
    const at = [...path, 'sluice_limits', i];
    if (!isMap(item)) {
      r.fail(at, item ?? extras, 'expected a limit ({ unit, requests_per_unit, sluice_algorithm, sluice_burst })');
      return;
    }
    const extra = readFields(r, item, at, EXTRA_LIMIT_KEYS);
    const extraUnitText = readString(r, extra.get('unit'), [...at, 'unit']) ?? '';
    const extraUnit = parseUnit(extraUnitText);
    if (!extraUnit) r.fail([...at, 'unit'], extra.get('unit')?.value ?? item, `invalid rate limit unit '${extraUnitText}'`);
    const rpu = readInt(r, extra.get('requests_per_unit'), [...at, 'requests_per_unit'], 1, UINT32_MAX);
    if (!extra.has('requests_per_unit')) r.fail(at, item, 'requests_per_unit is required (at least 1)');
    const algorithm = readAlgorithm(r, extra, at, extraUnit, rpu ?? 1);
    if (extraUnit && rpu !== undefined && algorithm) limits.push({ unit: extraUnit, requestsPerUnit: rpu, ...algorithm });
  });

  const seen = new Set<string>();
  for (const limit of limits) {
    const limitName = limitNameOf(limit);
    if (seen.has(limitName)) {
      r.fail([...path, 'sluice_limits'], fields.get('sluice_limits')?.key ?? node, `two ${limit.algorithm} limits per ${limit.unit.toLowerCase()} on one descriptor: merge them`);
    }
    seen.add(limitName);
  }
  if (r.problems.length > before || !unit) return null;
  return compileRule(ctx, { ...descriptor, name, replaces }, { unit, requestsPerUnit }, requestsPerUnit === 0 ? [] : limits);
}

/** sluice_algorithm and sluice_burst of a rate_limit or of a sluice_limits entry. */
function readAlgorithm(
  r: Reader,
  fields: Map<string, Field>,
  path: Path,
  unit: Unit | undefined,
  requestsPerUnit: number,
): { algorithm: EnvoyAlgorithm; burst: number | null } | undefined {
  let algorithm: EnvoyAlgorithm = 'fixed_window';
  const algorithmField = fields.get('sluice_algorithm');
  if (algorithmField) {
    const text = readString(r, algorithmField, [...path, 'sluice_algorithm']) ?? '';
    if (!(ALGORITHMS as readonly string[]).includes(text)) {
      r.fail([...path, 'sluice_algorithm'], algorithmField.value, `expected one of ${ALGORITHMS.join(', ')}, not '${text}'`);
      return undefined;
    }
    algorithm = text as EnvoyAlgorithm;
    if (algorithm !== 'fixed_window' && requestsPerUnit === 0) {
      r.fail([...path, 'requests_per_unit'], fields.get('requests_per_unit')?.value ?? algorithmField.key, `${algorithm} needs requests_per_unit of at least 1`);
    }
  }
  let burst: number | null = null;
  const burstField = fields.get('sluice_burst');
  if (burstField) {
    if (algorithm !== 'token_bucket') {
      r.fail([...path, 'sluice_burst'], burstField.key, 'sluice_burst applies to sluice_algorithm: token_bucket only');
      return undefined;
    }
    burst = readInt(r, burstField, [...path, 'sluice_burst'], 1, Number.MAX_SAFE_INTEGER) ?? null;
    if (burst === null) return undefined;
  }
  return unit ? { algorithm, burst } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Rules as sluice Resources

/** The store's name of a limit: algorithm and unit, so a change of either starts a new budget. */
function limitNameOf(limit: LimitSpec): string {
  return `${ALGORITHM_TAG[limit.algorithm]}_${limit.unit.toLowerCase()}`;
}

function toLimit(spec: LimitSpec): Limit {
  const base = { name: limitNameOf(spec), countsRequests: false };
  const periodMs = unitMs(spec.unit);
  if (spec.algorithm === 'token_bucket') {
    return { ...base, algorithm: 'token_bucket', capacity: spec.burst ?? spec.requestsPerUnit, intervalMs: periodMs / spec.requestsPerUnit };
  }
  return { ...base, algorithm: spec.algorithm, capacity: spec.requestsPerUnit, periodMs };
}

/** A rule's sluice Resource (none when `limits` is empty: requests_per_unit 0 blocks). */
export function compileRule(ctx: Context, head: RuleHead, main: ReportedLimit, limits: readonly LimitSpec[]): Rule {
  const reported = new Map<string, ReportedLimit>();
  for (const limit of limits) reported.set(limitNameOf(limit), { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit });
  const { options } = ctx;
  const resource: Resource | null =
    limits.length === 0
      ? null
      : {
          name: `envoy:${ctx.domain}`,
          keys: [],
          // `error` is the failure policy's `closed`, turned into UNAVAILABLE by the Envoy service.
          onStoreFailure: options.onStoreFailure === 'error' ? 'closed' : options.onStoreFailure,
          limits: limits.map(toLimit),
          permitTtlMs: 0,
          lease: options.lease,
          leasable: options.lease.enabled,
          // Envoy sends no priority: its traffic is priority 0, and nothing is reserved from it.
          reserve: [],
          usableBelow: [],
          maxWaiters: 0,
          lanes: [],
          laneShares: [],
        };
  // The scope carries the limits' algorithms and units: budgets of different shapes never share
  // a scope (the memory store keeps a scope's state by limit position), while an override and a
  // configured rule of the same unit share one, as upstream's cache keys do.
  const shapeTag = limits.map(limitNameOf).join('+');
  return { ...head, label: head.levels.join('.'), unlimited: false, main, resource, reported, shapeTag };
}

/** Past this many distinct overrides per config, the oldest rules are forgotten (and rebuilt on use). */
export const MAX_OVERRIDE_RULES = 1_000;

/**
 * The rule for a descriptor's limit override: upstream's fixed window with the given
 * requests_per_unit and unit, unnamed, never shadowed nor in quota mode, without metadata, as
 * upstream makes it. It shares its budget with a config rule
 * of the same unit on the same descriptor, as upstream's cache keys do.
 */
export function overrideRule(config: EnvoyConfig, domain: string, requestsPerUnit: number, unit: Unit): Rule {
  const id = `${domain}\u0000${requestsPerUnit}\u0000${unit}`;
  let rule = config.overrides.get(id);
  if (!rule) {
    const main = { requestsPerUnit, unit };
    const limits: LimitSpec[] = requestsPerUnit === 0 ? [] : [{ unit, requestsPerUnit, algorithm: 'fixed_window', burst: null }];
    const head = { levels: ['(override)'], name: '', replaces: [], shadow: false, quota: false, metadata: null, detailedMetric: false };
    rule = compileRule({ domain, options: config.options }, head, main, limits);
    if (config.overrides.size >= MAX_OVERRIDE_RULES) config.overrides.delete(config.overrides.keys().next().value!);
    config.overrides.set(id, rule);
  }
  return rule;
}
