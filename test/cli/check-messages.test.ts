// What `sluice check` says about a bad policy file, exactly: every problem in one run, in file
// order, each with its path, line and column (or the variable that gave the value), the bad value,
// the nearest valid name for a misspelt one, the units of a rate, a line per missing field, names
// given twice among the other problems, and YAML syntax errors at the column where they are.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/run-cli.js';
import { writePolicy } from '../support/sidecar.js';

const ALGORITHMS = 'token_bucket, fixed_window, sliding_window, concurrency';
const RESOURCE_KEYS = 'name, keys, on_store_failure, settle_within, lease, limits, reserve, wait, lanes';

// [what is wrong, the policy file, its environment, the problems `sluice check` prints]
const CASES: [string, string, Record<string, string>, string[]][] = [
  [
    'a misspelt algorithm, and one that is not near any',
    `resources:
  - name: openai
    limits:
      - { name: rpm, algorithm: token_buckt, rate: 60/1m }
      - { name: tpm, algorithm: leaky_bucket, rate: 90000/1m }
`,
    {},
    [
      `resources[0].limits[0].algorithm (line 4, column 33): "token_buckt": expected one of ${ALGORITHMS}; did you mean token_bucket?`,
      `resources[0].limits[1].algorithm (line 5, column 33): "leaky_bucket": expected one of ${ALGORITHMS}`,
    ],
  ],
  [
    'misspelt keys: placed at the key, with the nearest known one',
    `resources:
  - name: openai
    limts:
      - { name: rpm, algorithm: token_bucket, rate: 60/1m }
    keys: [tenant]
stor: {}
`,
    {},
    [
      'resources[0].limits (line 2, column 5): required (a list of limits)',
      'resources[0] (line 3, column 5): unknown key "limts" (did you mean limits?)',
      '(top level) (line 6, column 1): unknown key "stor" (did you mean store?)',
    ],
  ],
  [
    'a misspelt key in a flow map, and an unknown key near none: the known keys',
    `resources:
  - name: openai
    owner: platform
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 60/1m, burts: 10 }
`,
    {},
    [
      `resources[0] (line 3, column 5): unknown key "owner" (known keys: ${RESOURCE_KEYS})`,
      'resources[0].limits[0] (line 5, column 60): unknown key "burts" (did you mean burst?)',
    ],
  ],
  [
    'misspelt values of a choice',
    `resources:
  - name: openai
    on_store_failure: close
    limits:
      - { name: rpm, algorithm: fixed_window, rate: 60/1m, counts: request }
`,
    {},
    [
      'resources[0].on_store_failure (line 3, column 23): "close": expected open, closed or local; did you mean closed?',
      'resources[0].limits[0].counts (line 5, column 68): "request": expected cost or requests; did you mean requests?',
    ],
  ],
  [
    'rates and durations: the units they may have',
    `resources:
  - name: openai
    limits:
      - { name: a, algorithm: fixed_window, rate: 10/fortnight }
      - { name: b, algorithm: fixed_window, rate: 10/S }
      - { name: c, algorithm: sliding_window, rate: sixty }
      - { name: d, algorithm: concurrency, max: 8, ttl: 30sec }
      - { name: e, algorithm: concurrency, max: 8, ttl: 30 }
`,
    {},
    [
      'resources[0].limits[0].rate (line 4, column 51): "10/fortnight": the unit must be one of ms, s, m, h, d, as in 10/s, 10/1m or 10/30s',
      'resources[0].limits[1].rate (line 5, column 51): "10/S": the unit must be one of ms, s, m, h, d (did you mean 10/s?)',
      'resources[0].limits[2].rate (line 6, column 53): "sixty": expected N/period such as 60/1m or 5/s',
      'resources[0].limits[3].ttl (line 7, column 57): "30sec": the unit must be one of ms, s, m, h, d, as in 30s or 30ms',
      'resources[0].limits[4].ttl (line 8, column 57): 30: expected a duration such as 20ms, 30s, 1m',
    ],
  ],
  [
    'bad values, echoed: text, numbers, an empty value',
    `server:
  listen: nowhere
  admin:
  max_connections: 0
resources:
  - name: openai
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 60/1m, burst: 2.5 }
`,
    {},
    [
      'server.listen (line 2, column 11): "nowhere": expected host:port, :port (every interface) or unix:/path',
      'server.admin (line 3, column 9): empty: expected host:port or off',
      'server.max_connections (line 4, column 20): 0: expected at least 1',
      'resources[0].limits[0].burst (line 8, column 67): 2.5: expected a whole number',
    ],
  ],
  [
    'missing fields: a line for each, placed at the map that lacks it',
    `resources:
  - name: openai
    limits:
      - { name: inflight, algorithm: concurrency }
      - { algorithm: fixed_window }
      - { name: x, rate: 1/s }
  - name: anthropic
`,
    {},
    [
      'resources[0].limits[0].max (line 4, column 9): required (a whole number)',
      'resources[0].limits[0].ttl (line 4, column 9): required (a duration such as 20ms, 30s, 1m)',
      'resources[0].limits[1].name (line 5, column 9): required (a name of 1 to 64 of A-Z a-z 0-9 _ . : / -)',
      'resources[0].limits[1].rate (line 5, column 9): required (N/period such as 60/1m or 5/s)',
      `resources[0].limits[2].algorithm (line 6, column 9): required (one of ${ALGORITHMS})`,
      'resources[1].limits (line 7, column 5): required (a list of limits)',
    ],
  ],
  ['no resources at all', '# nothing yet\n', {}, ['resources: required (a list of resources, unless there is an envoy section)']],
  [
    'names and keys given twice, reported with every other problem',
    `resources:
  - name: openai
    keys: [tenant, tenant]
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 60/1m }
      - { name: rpm, algorithm: fixed_window, rate: 10/fortnight }
  - name: partner
    limits:
      - { name: rps, algorithm: token_bucket, rate: 5/s, burts: 10 }
  - name: openai
    limits:
      - { name: daily, algorithm: fixed_window, rate: 10000/1d }
`,
    {},
    [
      'resources[0].keys[1] (line 3, column 20): "tenant": duplicate key (keys[0] has it too)',
      'resources[0].limits[1].name (line 6, column 17): "rpm": duplicate name (limits[0] has it too)',
      'resources[0].limits[1].rate (line 6, column 53): "10/fortnight": the unit must be one of ms, s, m, h, d, as in 10/s, 10/1m or 10/30s',
      'resources[1].limits[0] (line 9, column 58): unknown key "burts" (did you mean burst?)',
      'resources[2].name (line 10, column 11): "openai": duplicate name (resources[0] has it too)',
    ],
  ],
  [
    'values from the environment: named by their variable, first',
    `resources:
  - name: openai
    limits: [{ name: rpm, algorithm: token_bucket, rate: 60/1m }]
    owner: platform
`,
    { SLUICE_LISTEN: 'nowhere', SLUICE_REDIS_URL: 'http://redis:6379' },
    [
      'server.listen (from SLUICE_LISTEN): "nowhere": expected host:port, :port (every interface) or unix:/path',
      'store.redis.url (from SLUICE_REDIS_URL): "http://redis:6379": expected redis://host:port or rediss://host:port',
      `resources[0] (line 4, column 5): unknown key "owner" (known keys: ${RESOURCE_KEYS})`,
    ],
  ],
  [
    'secrets: a password is not echoed, nor the password in a url',
    `store:
  redis: { url: "redis://app:hunter2@redis:6379/zero", password: 12345 }
resources:
  - name: openai
    limits: [{ name: rpm, algorithm: token_bucket, rate: 60/1m }]
`,
    {},
    [
      'store.redis.url (line 2, column 17): "redis://***@redis:6379/zero": expected redis://host:port or rediss://host:port[/db]: the path must be a database number, not /zero',
      'store.redis.password (line 2, column 66): expected a string',
    ],
  ],
  [
    'YAML: a flow list left open, named where it opens',
    `resources:
  - name: openai
    limits: [ { name: rpm, algorithm: token_bucket, rate: 60/1m }
  - name: partner
`,
    {},
    ['line 4, column 3: missed comma between flow collection entries (inside the [ at line 3, column 13)'],
  ],
  [
    'YAML: a list never closed, at its [',
    `resources:
  - name: openai
    limits: [{ name: rpm, algorithm: token_bucket, rate: 60/1m }
`,
    {},
    ['line 3, column 13: this [ is never closed: the file ends first'],
  ],
  [
    'YAML: a quote never closed, at the quote',
    `server:
  listen: "127.0.0.1:50051
  admin: 127.0.0.1:9464
`,
    {},
    ['line 2, column 11: this " is never closed: the file ends first'],
  ],
  ['YAML: an alias of no anchor, at its *', 'resources:\n  - name: openai\n    limits: *standard\n', {}, ['line 3, column 13: unidentified alias "standard"']],
  ['YAML: a key indented too little, at the key', 'resources:\n  - name: openai\n   limits: []\n', {}, ['line 3, column 4: bad indentation of a sequence entry']],
  ['YAML: a tab in the indentation, at the tab', 'resources:\n\t- name: openai\n', {}, ['line 2, column 1: tab characters must not be used in indentation']],
];

describe('sluice check on a bad policy file', () => {
  it.each(CASES)('%s', async (_, yaml, env, expected) => {
    const file = writePolicy(yaml);
    const exit = await runCli(['check', file], env);
    expect(exit).toEqual({ code: 1, stdout: '', stderr: `${file}: invalid policy\n${expected.map((line) => `  ${line}\n`).join('')}` });
  });
});
