/**
 * Unique ZeroMQ endpoints for tests, one per call, so tests (and vitest workers running in parallel) never
 * share an address. Like zeromq.js's own test helper, but ipc sockets live in os.tmpdir() (removed by
 * `releaseAddress`) and tcp ports are ones the OS reports free, not a counter that may collide with a service.
 *
 * ```ts
 * describe.each(TRANSPORTS)('over %s', (transport) => {
 *   let address: string;
 *   beforeEach(async () => { address = await uniqueAddress(transport); });
 *   afterEach(() => releaseAddress(address));
 * });
 * ```
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capability } from 'zeromq';

/** A ZeroMQ transport the tests run over. */
export type Transport = 'ipc' | 'tcp';

/** Every transport this machine's libzmq supports (ipc is absent on some Windows builds). */
export const TRANSPORTS: Transport[] = capability.ipc ? ['ipc', 'tcp'] : ['tcp'];

let sequence = 0;

/** A free loopback TCP port: bind port 0, read what the OS chose, let it go. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from the OS'))));
    });
  });
}

/** A fresh endpoint for `transport`: `ipc://<tmpdir>/hwa-<pid>-<n>-<random>.sock` or `tcp://127.0.0.1:<free port>`. */
export async function uniqueAddress(transport: Transport): Promise<string> {
  sequence++;
  if (transport === 'tcp') return `tcp://127.0.0.1:${await freePort()}`;
  // Unix socket paths are limited to ~107 bytes: keep the name short.
  return `ipc://${join(tmpdir(), `hwa-${process.pid}-${sequence}-${randomBytes(3).toString('hex')}.sock`)}`;
}

/** Removes an ipc endpoint's socket file if libzmq left it behind; a no-op for tcp. */
export function releaseAddress(address: string): void {
  if (address.startsWith('ipc://')) rmSync(address.slice('ipc://'.length), { force: true });
}
