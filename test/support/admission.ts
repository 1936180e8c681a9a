// The golden AdmissionReview fixtures (test/kube/fixtures/): each review as the API server sends
// it, and the answer expected, with its patch decoded so that a change reads as a diff.
// SLUICE_UPDATE_FIXTURES=1 rewrites the expected answers from what the injector answers now.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import type { InjectorOptions } from '../../src/kube/inject.js';

export const FIXTURE_DIR = join(packageRoot, 'test', 'kube', 'fixtures');

/** What the fixtures' answers were recorded with. */
export const INJECTOR_OPTIONS: InjectorOptions = { namespace: 'sluice-system', defaultImage: 'sluice:test' };

export interface Fixture {
  name: string;
  /** Where the API server posts it: /inject/namespace for namespaces labelled sluice.dev/inject=enabled. */
  path: '/inject' | '/inject/namespace';
}

export const FIXTURES: Fixture[] = [
  { name: 'native', path: '/inject' },
  { name: 'classic', path: '/inject' },
  { name: 'namespace-label', path: '/inject/namespace' },
  { name: 'namespace-opt-out', path: '/inject/namespace' },
  { name: 'already-injected', path: '/inject' },
  { name: 'every-annotation', path: '/inject' },
  { name: 'sluice-addr-set', path: '/inject' },
  { name: 'init-containers', path: '/inject' },
  { name: 'bad-annotation', path: '/inject' },
  { name: 'malformed-review', path: '/inject' },
  { name: 'unreadable-pod', path: '/inject' },
];

export function reviewText(fixture: Fixture): string {
  return readFileSync(join(FIXTURE_DIR, `${fixture.name}.review.json`), 'utf8');
}

/** The review's answer with its base64 patch decoded. */
export function readable(review: any): any {
  const response = review?.response;
  if (typeof response?.patch !== 'string') return review;
  return { ...review, response: { ...response, patch: JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) } };
}

/** Compares an answer with the recorded one (or records it, with SLUICE_UPDATE_FIXTURES=1). */
export function expectRecordedAnswer(fixture: Fixture, review: unknown): void {
  const file = join(FIXTURE_DIR, `${fixture.name}.expected.json`);
  if (process.env.SLUICE_UPDATE_FIXTURES === '1') writeFileSync(file, `${JSON.stringify(readable(review), null, 2)}\n`);
  expect(readable(review)).toEqual(JSON.parse(readFileSync(file, 'utf8')));
}
