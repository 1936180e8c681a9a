// A descriptor's `metadata` and the dynamic metadata of an answer, as envoyproxy/ratelimit gives
// them (with RESPONSE_DYNAMIC_METADATA; sluice's envoy.response_dynamic_metadata): the domain, each
// request descriptor, the request's hits_addend, and the metadata of every descriptor that was
// not over its limit, merged in request order.

/** A value of a protobuf Struct, as plain data. */
export type MetadataValue = null | boolean | number | string | MetadataValue[] | Metadata;
export interface Metadata {
  [key: string]: MetadataValue;
}

export interface DescribedDescriptor {
  entries: readonly { key: string; value: string }[];
  override: { requestsPerUnit: number; unit: string } | null;
  /** The descriptor's own hits_addend, when it has one. */
  hits: number | null;
}

/**
 * The answer's dynamic metadata. `passed` holds the metadata of the descriptors that were not
 * over their limit (unlimited ones excepted), in request order; the first to name a key keeps it,
 * and two maps under one key are merged key by key.
 */
export function dynamicMetadata(domain: string, descriptors: readonly DescribedDescriptor[], requestHits: number, passed: readonly Metadata[]): Metadata {
  const out: Metadata = { domain, descriptors: descriptors.map(describe) };
  if (requestHits !== 0) out.hitsAddend = requestHits;
  const merged: Metadata = {};
  for (const metadata of passed) mergeInto(merged, metadata);
  if (Object.keys(merged).length > 0) out.metadata = merged;
  return out;
}

function describe(descriptor: DescribedDescriptor): Metadata {
  const out: Metadata = { entries: descriptor.entries.map(({ key, value }) => `${key}=${value}`) };
  // Upstream writes the override in protobuf's text format.
  if (descriptor.override) out.limit = `requests_per_unit:${descriptor.override.requestsPerUnit} unit:${descriptor.override.unit}`;
  if (descriptor.hits !== null) out.hitsAddend = descriptor.hits;
  return out;
}

function isMap(value: MetadataValue | undefined): value is Metadata {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Sets an own entry, whatever the key: a key such as `__proto__` (config files may use any) is
 * data, never the object's prototype.
 */
export function setEntry(map: Metadata, key: string, value: MetadataValue): void {
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}

function copyOf(value: MetadataValue): MetadataValue {
  if (Array.isArray(value)) return value.map(copyOf);
  if (!isMap(value)) return value;
  const copy: Metadata = {};
  for (const key of Object.keys(value)) setEntry(copy, key, copyOf(value[key]!));
  return copy;
}

/** Copies, so that merging never changes a rule's metadata. */
function mergeInto(into: Metadata, from: Metadata): void {
  for (const key of Object.keys(from)) {
    const value = from[key]!;
    if (!Object.hasOwn(into, key)) setEntry(into, key, copyOf(value));
    else if (isMap(into[key]) && isMap(value)) mergeInto(into[key], value);
  }
}

/** google.protobuf.Value as protobufjs decodes it (camelCase, with `kind` naming the one set). */
export interface WireValue {
  kind?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct | null;
  listValue?: { values?: WireValue[] | null } | null;
}

export interface WireStruct {
  fields?: Record<string, WireValue> | null;
}

/** A decoded google.protobuf.Struct as plain data (a Value with nothing set is null). */
export function metadataFromStruct(struct: WireStruct): Metadata {
  const out: Metadata = {};
  for (const key of Object.keys(struct.fields ?? {})) setEntry(out, key, valueFromWire(struct.fields![key]!));
  return out;
}

function valueFromWire(value: WireValue): MetadataValue {
  switch (value.kind) {
    case 'numberValue':
      return value.numberValue ?? 0;
    case 'stringValue':
      return value.stringValue ?? '';
    case 'boolValue':
      return value.boolValue ?? false;
    case 'structValue':
      return metadataFromStruct(value.structValue ?? {});
    case 'listValue':
      return (value.listValue?.values ?? []).map(valueFromWire);
    default:
      return null;
  }
}
