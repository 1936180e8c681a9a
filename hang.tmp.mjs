import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from './dist/test/support/client.js';
