/**
 * CURVE security for runs across untrusted networks (`--curve-keys DIR`): ZeroMQ's CurveZMQ encrypts every
 * frame between coordinator and workers, and a ZAP handler in the coordinator admits only workers whose
 * public key is in the key folder. The folder is made once by `hwa keys` and copied to every host:
 * ```
 * DIR/coordinator.public   DIR/coordinator.secret       (the coordinator needs both; workers the public one)
 * DIR/worker-<k>.public    DIR/worker-<k>.secret        (worker k needs its pair; the coordinator all publics)
 * ```
 * Keys are Z85 text (40 characters, libzmq's format), one per file; secret files are written mode 0600.
 * A worker whose key is not listed is refused at the handshake: the coordinator logs the key, the worker
 * gets a handshake error and says so instead of waiting.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@hwa/core';
import { Context, Reply, curveKeyPair } from 'zeromq';

/** What the coordinator's ROUTER needs. */
export interface CoordinatorCurve {
  /** Z85 secret key of the coordinator. */
  secretKey: string;
  /** Z85 public keys of the workers allowed in. */
  authorizedKeys: string[];
}

/** What a worker's DEALER needs. */
export interface WorkerCurve {
  /** Z85 public key of the coordinator (the server it checks it talks to). */
  serverKey: string;
  /** This worker's Z85 key pair. */
  publicKey: string;
  secretKey: string;
}

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

function readKey(dir: string, name: string): string {
  const file = join(dir, name);
  if (!existsSync(file)) throw new ConfigError(`--curve-keys ${dir}: no ${name} (make the folder with \`hwa keys --dir ${dir} --workers K\`)`);
  const key = readFileSync(file, 'utf8').trim();
  if (!Z85_KEY.test(key)) throw new ConfigError(`--curve-keys ${dir}: ${name} does not hold a 40-character Z85 CURVE key`);
  return key;
}

/**
 * Writes a coordinator key pair and one pair per worker rank into `dir` (made if missing).
 * @throws ConfigError if `dir` already holds keys (never overwrites: running workers would be locked out).
 */
export function generateCurveKeys(dir: string, workers: number): string[] {
  if (!(Number.isInteger(workers) && workers >= 1)) throw new ConfigError(`--workers must be a whole number ≥ 1, got ${workers}`);
  mkdirSync(dir, { recursive: true });
  const names = ['coordinator', ...Array.from({ length: workers }, (_, k) => `worker-${k}`)];
  const clash = names.flatMap((n) => [`${n}.public`, `${n}.secret`]).find((f) => existsSync(join(dir, f)));
  if (clash) throw new ConfigError(`${join(dir, clash)} already exists; hwa keys never overwrites keys (use a new folder)`);
  const written: string[] = [];
  for (const name of names) {
    const { publicKey, secretKey } = curveKeyPair();
    writeFileSync(join(dir, `${name}.public`), publicKey + '\n');
    const secret = join(dir, `${name}.secret`);
    writeFileSync(secret, secretKey + '\n', { mode: 0o600 });
    chmodSync(secret, 0o600);
    written.push(join(dir, `${name}.public`), secret);
  }
  return written;
}

/** The coordinator's keys from `dir`: its secret key and every worker-<k>.public there. */
export function coordinatorCurve(dir: string): CoordinatorCurve {
  const secretKey = readKey(dir, 'coordinator.secret');
  const publics = readdirSync(dir).filter((f) => /^worker-\d+\.public$/.test(f)).sort();
  if (publics.length === 0) throw new ConfigError(`--curve-keys ${dir}: no worker-<k>.public, so no worker could join`);
  return { secretKey, authorizedKeys: publics.map((f) => readKey(dir, f)) };
}

/** Worker `rank`'s keys from `dir`. */
export function workerCurve(dir: string, rank: number): WorkerCurve {
  return {
    serverKey: readKey(dir, 'coordinator.public'),
    publicKey: readKey(dir, `worker-${rank}.public`),
    secretKey: readKey(dir, `worker-${rank}.secret`),
  };
}

const Z85_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** Z85 text of bytes whose length is a multiple of 4 (ZeroMQ RFC 32), e.g. a 32-byte CURVE key → 40 chars. */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new RangeError(`z85Encode: ${bytes.length} bytes is not a multiple of 4`);
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = ((bytes[i] << 24) >>> 0) + (bytes[i + 1] << 16) + (bytes[i + 2] << 8) + bytes[i + 3];
    const group: string[] = [];
    for (let j = 0; j < 5; j++) {
      group.unshift(Z85_CHARS[value % 85]);
      value = Math.floor(value / 85);
    }
    out += group.join('');
  }
  return out;
}

/** The coordinator's ZAP handler: answers libzmq's authentication requests for one ZeroMQ context. */
export interface ZapHandler {
  /** Stops answering (the context's CURVE sockets then refuse every handshake). */
  close(): void;
}

/**
 * Binds a ZAP handler (ZeroMQ RFC 27) in `context` that admits CURVE clients whose public key is in
 * `authorizedKeys` and refuses everything else, calling `onDenied` with the refused key and address. Give
 * each coordinator its own context: there is one ZAP endpoint per context.
 */
export async function startZapHandler(
  context: Context,
  authorizedKeys: readonly string[],
  onDenied: (info: { publicKey: string; address: string; mechanism: string }) => void,
): Promise<ZapHandler> {
  const allowed = new Set(authorizedKeys);
  const socket = new Reply({ context, linger: 0 });
  await socket.bind('inproc://zeromq.zap.01');
  void (async () => {
    try {
      for await (const frames of socket) {
        // version, request id, domain, address, identity, mechanism, credentials…
        const [version, requestId, , address, , mechanism, credential] = frames;
        const mech = mechanism?.toString() ?? '';
        const publicKey = mech === 'CURVE' && credential?.length === 32 ? z85Encode(credential) : '';
        const ok = version?.toString() === '1.0' && publicKey !== '' && allowed.has(publicKey);
        if (!ok) onDenied({ publicKey, address: address?.toString() ?? '', mechanism: mech });
        await socket.send(['1.0', requestId ?? '', ok ? '200' : '400', ok ? 'OK' : 'key not authorized', ok ? publicKey : '', '']);
      }
    } catch {
      // the socket was closed
    }
  })();
  return { close: () => socket.close() };
}
