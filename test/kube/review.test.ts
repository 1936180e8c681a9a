// AdmissionReviews the webhook is not meant to get, or gets from a hostile sender: each is
// answered allowed, with the same uid, and only a pod being created is ever patched.
import { describe, expect, it } from 'vitest';
import { answerReview } from '../../src/kube/review.js';
import { INJECTOR_OPTIONS } from '../support/admission.js';

const POD = { metadata: { name: 'p', annotations: { 'sluice.dev/inject': 'true' } }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };

function review(request: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, namespace: 'shop', operation: 'CREATE', object: POD, ...request },
  });
}

const response = (text: string) => answerReview(text, false, INJECTOR_OPTIONS).review.response as Record<string, unknown>;

describe('answerReview', () => {
  it('patches a pod being created', () => {
    expect(response(review({}))).toMatchObject({ uid: 'u-1', allowed: true, patchType: 'JSONPatch' });
  });

  // The API server refuses an update that adds a container, and with it the update the user
  // asked for: a webhook configured for more than CREATE must not turn every pod edit into an error.
  for (const [what, request] of [
    ['an UPDATE', { operation: 'UPDATE', oldObject: POD }],
    ['an ephemeral container being added', { operation: 'UPDATE', subResource: 'ephemeralcontainers', oldObject: POD }],
    ['a CREATE on a subresource', { subResource: 'status' }],
    ['a DELETE', { operation: 'DELETE', object: null, oldObject: POD }],
  ] as const) {
    it(`allows ${what} unchanged, without a warning`, () => {
      const answer = answerReview(review(request), false, INJECTOR_OPTIONS);
      expect(answer.review.response).toEqual({ uid: 'u-1', allowed: true });
      expect(answer.injected).toBe(false);
      expect(answer.reason).toMatch(/only pods being created are injected/);
    });
  }

  it('answers a deeply nested body, and a deeply nested field in the pod, without throwing', () => {
    expect(response('['.repeat(500_000) + ']'.repeat(500_000))).toEqual({ uid: '', allowed: true });
    const nested = review({}).replace('"containers":', `"deep":${'['.repeat(200_000)}${']'.repeat(200_000)},"containers":`);
    expect(response(nested)).toMatchObject({ uid: 'u-1', allowed: true, patchType: 'JSONPatch' });
  });
});
