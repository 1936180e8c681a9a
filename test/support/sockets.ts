// Watching connections that a server under attack should cut.
import type { Socket } from 'node:net';

/** How long after `since` the socket closes, or Infinity when it is still open after `within` ms. */
export function closesIn(socket: Socket, since: number, within: number): Promise<number> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(Infinity), within);
    socket.on('error', () => undefined);
    // Read what comes, so that the server's FIN is seen: a paused socket never ends.
    socket.resume();
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - since);
    });
  });
}
