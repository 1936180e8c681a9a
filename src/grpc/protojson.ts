// Protobuf's JSON mapping (what Go's protojson reads and writes, and envoyproxy/ratelimit's /json
// with it), over message types loaded from proto/. Reading turns a parsed JSON value into the
// object proto-loader decodes from the same message on the wire (keepCase, longs as Number,
// enums as String, defaults filled), so that what follows is the gRPC path unchanged; writing
// turns such an object into JSON. Only what the Envoy RLS messages use is covered: strings,
// booleans, whole numbers, enums, nested and repeated messages, and of the well-known types the
// wrappers (read: they are in requests) and Duration and Struct (written: they are in answers).
// Anything else is a fault in sluice, never the caller's.
import protobuf, { type Enum, type Field, type Type } from 'protobufjs';
import { invalid } from './request-error.js';

/** The JSON name of a field: lowerCamelCase, as protoc derives it (`hits_addend` -> `hitsAddend`). */
export function jsonName(field: Field): string {
  return field.name.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/**
 * A JSON value (as JSON.parse returns it) as a message of `type`. Refuses, with INVALID_ARGUMENT
 * naming the field, what protojson refuses: an unknown field, a field given twice (by either
 * name), a value of the wrong kind, a number out of range or not whole, an unknown enum name, a
 * string that is not valid Unicode. `null` leaves a field unset.
 */
export function readMessage(type: Type, json: unknown, at = ''): Record<string, unknown> {
  // A wrapper (google.protobuf.UInt64Value) is written as the value it wraps: "hitsAddend": 3.
  if (WRAPPERS.has(type.fullName)) return { value: readSingle(type.fields.value!, json, at) };
  if (type.fullName.startsWith('.google.protobuf.')) throw new Error(`protojson: ${type.fullName} is not supported`);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid(`${at || 'request'}: expected a JSON object (${type.name}), not ${shown(json)}`);
  const message: Record<string, unknown> = {};
  for (const field of type.fieldsArray) message[field.name] = field.repeated ? [] : defaultOf(field);
  const fields = namesOf(type);
  const given = new Set<Field>();
  for (const [key, value] of Object.entries(json)) {
    const field = fields.get(key);
    const path = at ? `${at}.${key}` : key;
    if (!field) throw invalid(`${path}: unknown field of ${type.name}`);
    if (given.has(field)) throw invalid(`${path}: ${field.name} is given twice`);
    given.add(field);
    if (value === null) continue;
    if (!field.repeated) {
      message[field.name] = readSingle(field, value, path);
      continue;
    }
    if (!Array.isArray(value)) throw invalid(`${path}: expected a JSON array, not ${shown(value)}`);
    message[field.name] = value.map((item, i) => readSingle(field, item, `${path}[${i}]`));
  }
  return message;
}

/**
 * A message object (as proto-loader decodes one, or as a gRPC handler answers) in protobuf's
 * JSON mapping: JSON names, enums by name, 64-bit numbers as strings, durations as "12s", and
 * fields at their default (0, "", the enum's first value, unset, empty) left out.
 */
export function writeMessage(type: Type, message: Record<string, unknown>): unknown {
  const wellKnown = WELL_KNOWN_WRITERS[type.fullName];
  if (wellKnown) return wellKnown(message);
  if (type.fullName.startsWith('.google.protobuf.')) throw new Error(`protojson: ${type.fullName} is not supported`);
  const json: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const value = message[field.name];
    if (value === undefined || value === null) continue;
    if (field.repeated) {
      const items = value as unknown[];
      if (items.length > 0) json[jsonName(field)] = items.map((item) => writeOne(field, item));
    } else if (!isDefault(field, value)) {
      json[jsonName(field)] = writeOne(field, value);
    }
  }
  return json;
}

/** Field by JSON name and by proto name, per type (a Map: no name reaches Object's prototype). */
const names = new WeakMap<Type, Map<string, Field>>();

function namesOf(type: Type): Map<string, Field> {
  let map = names.get(type);
  if (!map) {
    map = new Map();
    for (const field of type.fieldsArray) {
      map.set(jsonName(field), field);
      map.set(field.name, field);
    }
    names.set(type, map);
  }
  return map;
}

function readSingle(field: Field, value: unknown, at: string): unknown {
  const resolved = field.resolvedType;
  if (resolved === null) return readScalar(field, value, at);
  if (resolved instanceof protobuf.Type) return readMessage(resolved, value, at);
  return readEnum(resolved as Enum, value, at);
}

function readEnum(type: Enum, value: unknown, at: string): string | number {
  if (typeof value === 'string') {
    if (!Object.hasOwn(type.values, value)) throw invalid(`${at}: expected one of ${Object.keys(type.values).join(', ')}, not ${shown(value)}`);
    return value;
  }
  // A number, known or not: proto3 enums are open, and proto-loader keeps an unknown one as a number.
  const number = wholeNumber(value, -(2 ** 31), 2 ** 31 - 1);
  if (number === undefined) throw invalid(`${at}: expected one of ${Object.keys(type.values).join(', ')} or its number, not ${shown(value)}`);
  return type.valuesById[number] ?? number;
}

/**
 * The whole-number kinds, with their bounds. Numbers are read as doubles, exact up to 2^53: past
 * that the fields' own checks refuse them (as they refuse them from the wire).
 */
const WHOLE: Readonly<Record<string, { min: number; max: number; range: string }>> = {
  int32: { min: -(2 ** 31), max: 2 ** 31 - 1, range: '-2147483648 to 2147483647' },
  sint32: { min: -(2 ** 31), max: 2 ** 31 - 1, range: '-2147483648 to 2147483647' },
  sfixed32: { min: -(2 ** 31), max: 2 ** 31 - 1, range: '-2147483648 to 2147483647' },
  uint32: { min: 0, max: 2 ** 32 - 1, range: '0 to 4294967295' },
  fixed32: { min: 0, max: 2 ** 32 - 1, range: '0 to 4294967295' },
  int64: { min: -(2 ** 63), max: 2 ** 63, range: '-9223372036854775808 to 9223372036854775807' },
  sint64: { min: -(2 ** 63), max: 2 ** 63, range: '-9223372036854775808 to 9223372036854775807' },
  sfixed64: { min: -(2 ** 63), max: 2 ** 63, range: '-9223372036854775808 to 9223372036854775807' },
  uint64: { min: 0, max: 2 ** 64, range: '0 to 18446744073709551615' },
  fixed64: { min: 0, max: 2 ** 64, range: '0 to 18446744073709551615' },
};

/** Written as JSON strings: a JSON number past 2^53 loses digits in most readers. */
const LONGS = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);

function readScalar(field: Field, value: unknown, at: string): unknown {
  if (field.type === 'string') {
    if (typeof value !== 'string') throw invalid(`${at}: expected a JSON string, not ${shown(value)}`);
    // A lone surrogate (\ud800) is valid JSON but not Unicode; protojson refuses it too.
    if (/\p{Cs}/u.test(value)) throw invalid(`${at}: not valid Unicode (a lone surrogate)`);
    return value;
  }
  if (field.type === 'bool') {
    if (typeof value !== 'boolean') throw invalid(`${at}: expected true or false, not ${shown(value)}`);
    return value;
  }
  const kind = WHOLE[field.type];
  if (!kind) throw new Error(`protojson: ${field.type} fields are not supported`);
  const number = wholeNumber(value, kind.min, kind.max);
  if (number === undefined) throw invalid(`${at}: expected a whole number from ${kind.range} (${field.type}), as a JSON number or string, not ${shown(value)}`);
  return number;
}

/** A JSON number, or a string holding one (protojson takes both: 1, "1", 1e2, "1.0"), if it is whole and in [min, max]. */
function wholeNumber(value: unknown, min: number, max: number): number | undefined {
  let number: number;
  if (typeof value === 'number') number = value;
  else if (typeof value === 'string' && /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(value)) number = Number(value);
  else return undefined;
  if (!Number.isInteger(number) || number < min || number > max) return undefined;
  return number === 0 ? 0 : number;
}

function defaultOf(field: Field): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return null;
  if (resolved) return (resolved as Enum).valuesById[0];
  if (field.type === 'string') return '';
  if (field.type === 'bool') return false;
  return 0;
}

/** A set message counts as given even when empty; an enum's first value is its default. */
function isDefault(field: Field, value: unknown): boolean {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return false;
  if (resolved && typeof value === 'number') return value === 0;
  return value === defaultOf(field);
}

/** One value of a field (or one item of a repeated one). */
function writeOne(field: Field, value: unknown): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return writeMessage(resolved, value as Record<string, unknown>);
  if (resolved) return typeof value === 'number' ? ((resolved as Enum).valuesById[value] ?? value) : value;
  return writeScalar(field, value);
}

function writeScalar(field: Field, value: unknown): unknown {
  if (LONGS.has(field.type)) return String(value);
  if (field.type === 'string' || field.type === 'bool' || WHOLE[field.type]) return value;
  throw new Error(`protojson: ${field.type} fields are not supported`);
}

const WRAPPERS = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue'].map((name) => `.google.protobuf.${name}`),
);

/** google.protobuf.Struct's field names are camelCase whatever keepCase says: protobufjs defines the well-known types itself. */
type StructObject = { fields: Record<string, ValueObject> };
type ValueObject = { nullValue?: unknown; numberValue?: number; stringValue?: string; boolValue?: boolean; structValue?: StructObject; listValue?: { values: ValueObject[] } };

const WELL_KNOWN_WRITERS: Readonly<Record<string, (message: Record<string, unknown>) => unknown>> = {
  '.google.protobuf.Duration': (message) => writeDuration(Number(message.seconds ?? 0), Number(message.nanos ?? 0)),
  '.google.protobuf.Struct': (message) => writeStruct(message as StructObject),
};

/** "12s", "1.500s", "-0.000000001s": seconds with 0, 3, 6 or 9 digits of fraction. */
function writeDuration(seconds: number, nanos: number): string {
  const negative = seconds < 0 || nanos < 0;
  let fraction = nanos === 0 ? '' : `.${String(Math.abs(nanos)).padStart(9, '0')}`;
  while (fraction.endsWith('000')) fraction = fraction.slice(0, -3);
  return `${negative ? '-' : ''}${Math.abs(seconds)}${fraction}s`;
}

function writeStruct(struct: StructObject): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  // defineProperty: a key such as __proto__ is a key like any other.
  for (const key of Object.keys(struct.fields)) Object.defineProperty(json, key, { value: writeValue(struct.fields[key]!), enumerable: true });
  return json;
}

function writeValue(value: ValueObject): unknown {
  if (value.structValue) return writeStruct(value.structValue);
  if (value.listValue) return value.listValue.values.map(writeValue);
  if (value.numberValue !== undefined) {
    if (!Number.isFinite(value.numberValue)) throw new Error(`protojson: ${value.numberValue} has no JSON form in a google.protobuf.Value`);
    return value.numberValue;
  }
  return value.stringValue ?? value.boolValue ?? null;
}

/** A value for a message, short: a caller's 1 MiB string is not repeated back whole. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 64 ? `${text.slice(0, 64)}...` : text;
}
