// Request bodies read into memory, bounded twice: each by its own size, and all of a server's
// together by a budget of bytes held at once, so that clients sending large bodies (or many
// slow ones) cannot make the process outgrow its memory limit.
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface BodyLimits {
  /** One body past this is refused (413). */
  maxBytes: number;
  /** Bytes the server's requests may hold at once, shared by them; past it a body is refused (503). */
  budget: { free: number };
}

/** Why a body was not read: 413, it is too large; 503, the server holds too many bytes already. */
export interface BodyRefusal {
  status: 413 | 503;
  /** What the client sent or declared, as far as it is known. */
  bytes: number;
}

/**
 * Reads `req`'s body: `done` gets it whole, or `refused` is called once and the rest is drained
 * unread (a body that declares a length past maxBytes is refused before any of it is read); the
 * refusal's answer should close the connection. Neither is called for a request its client
 * abandons. The body's bytes stay counted in the budget until the response is finished or
 * abandoned: what is made of a body is held as long as that.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limits: BodyLimits, done: (body: Buffer) => void, refused: (why: BodyRefusal) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let stopped = false;
  // What this request holds of the shared budget goes back once, however the request ends.
  const release = () => {
    limits.budget.free += size;
    size = 0;
    chunks.length = 0;
  };
  res.once('close', release);
  const refuse = (status: BodyRefusal['status']) => {
    stopped = true;
    const bytes = Math.max(size, Number(req.headers['content-length'] ?? 0));
    release();
    refused({ status, bytes });
    req.resume();
  };
  if (Number(req.headers['content-length'] ?? 0) > limits.maxBytes) return refuse(413);
  req.on('data', (chunk: Buffer) => {
    if (stopped) return;
    if (size + chunk.length > limits.maxBytes) return refuse(413);
    if (chunk.length > limits.budget.free) return refuse(503);
    size += chunk.length;
    limits.budget.free -= chunk.length;
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (stopped) return;
    stopped = true;
    const body = Buffer.concat(chunks);
    chunks.length = 0;
    done(body);
  });
}
