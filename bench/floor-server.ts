// The floor: a grpc-js server for the same sluice.v1 proto that decides nothing. Acquire is granted
// at once; AcquireStream answers each message at once. The answer has the same fields filled as a
// real sluice grant, so the floor pays the same serialization, and the server has sluice's
// per-call options (no channelz bookkeeping), so it pays no more per call than sluice's does. Run as its own process:
//   node dist/bench/floor-server.js      (logs {"msg":"listening","address":...} on stdout)
import { pathToFileURL } from 'node:url';
import {
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { serviceOf, sluicePackage } from '../src/grpc/proto.js';
import { CALL_OPTIONS } from '../src/grpc/server-options.js';

interface Request {
  request_id: string;
}

const GRANT = {
  granted: true,
  permit_id: '',
  retry_after: null,
  remaining: 999_999,
  limit: 1_000_000,
  reset_after: { seconds: 0, nanos: 1_000_000 },
  limit_name: 'rps',
  decided_by: 'STORE',
  waited: null,
  reason: '',
};

const answer = (req: Request) => ({ ...GRANT, request_id: req.request_id });

export async function startFloor(listen = '127.0.0.1:0'): Promise<{ server: Server; address: string }> {
  const server = new Server(CALL_OPTIONS);
  server.addService(serviceOf(sluicePackage, 'sluice.v1.RateLimiter'), {
    Acquire(call: ServerUnaryCall<Request, unknown>, callback: sendUnaryData<unknown>) {
      callback(null, answer(call.request));
    },
    Release(_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) {
      callback(null, { released: true });
    },
    AcquireStream(call: ServerDuplexStream<Request, unknown>) {
      call.on('data', (req: Request) => call.write(answer(req)));
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { server, address } = await startFloor(process.env.FLOOR_LISTEN);
  process.stdout.write(`${JSON.stringify({ msg: 'listening', address })}\n`);
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
