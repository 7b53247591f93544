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
 *
 * The handshake only proves that a peer holds *some* listed key: libzmq does not tell the application which
 * key a message came with. So each key is bound to its rank one level up (docs/protocol.md#curve-and-zap):
 * the worker's hello carries {@link helloProof}, an HMAC keyed with the X25519 secret that only worker-<k>'s
 * secret key and the coordinator's secret key can compute, and the coordinator refuses a hello whose proof is
 * not rank k's.
 */
import { createHmac, createPrivateKey, createPublicKey, diffieHellman, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, ResourceError } from '@hwa/core';
import { Context, Reply, curveKeyPair } from 'zeromq';

/** What the coordinator's ROUTER needs. */
export interface CoordinatorCurve {
  /** Z85 secret key of the coordinator. */
  secretKey: string;
  /** Z85 public keys of the workers allowed in. */
  authorizedKeys: string[];
  /** Worker k's Z85 public key at index k (from worker-<k>.public): the key a rank-k hello must prove. */
  rankKeys?: Record<number, string>;
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
  let key: string;
  try {
    key = readFileSync(file, 'utf8').trim();
  } catch (e) {
    // One line naming the file, e.g. a secret key of mode 0600 read by another user in a container.
    const err = e as NodeJS.ErrnoException;
    throw new ResourceError(`--curve-keys ${dir}: cannot read ${name}: ${err.code === 'EACCES' ? 'permission denied (EACCES): the key files must be readable by the user hwa runs as' : `${err.message}`}`);
  }
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
  const rankKeys: Record<number, string> = {};
  for (const f of publics) rankKeys[Number(/^worker-(\d+)\.public$/.exec(f)?.[1])] = readKey(dir, f);
  return { secretKey, authorizedKeys: Object.values(rankKeys), rankKeys };
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

/** The 32 bytes of Z85 text (ZeroMQ RFC 32), e.g. a 40-character CURVE key. */
export function z85Decode(text: string): Buffer {
  if (text.length % 5 !== 0) throw new RangeError(`z85Decode: ${text.length} characters is not a multiple of 5`);
  const out = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const digit = Z85_CHARS.indexOf(text[i + j]);
      if (digit < 0) throw new RangeError(`z85Decode: '${text[i + j]}' is not a Z85 character`);
      value = value * 85 + digit;
    }
    out.writeUInt32BE(value >>> 0, (i / 5) * 4);
  }
  return out;
}

// DER wrappings of raw X25519 keys (RFC 8410), so node:crypto can use CurveZMQ's raw 32-byte keys.
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');

/**
 * The proof a CURVE worker of `rank` puts in its hello, or the one the coordinator expects: HMAC-SHA256 over
 * the rank and the connection's routing id, keyed with X25519(ownSecret, peerPublic) — the same secret on
 * both sides (worker: its secret key and coordinator.public; coordinator: its secret key and
 * worker-<rank>.public). The traffic is encrypted, so no other peer sees a proof to replay it.
 */
export function helloProof(ownSecretKey: string, peerPublicKey: string, rank: number, routingId: Uint8Array): string {
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8, z85Decode(ownSecretKey)]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey({ key: Buffer.concat([X25519_SPKI, z85Decode(peerPublicKey)]), format: 'der', type: 'spki' });
  const shared = diffieHellman({ privateKey, publicKey });
  return createHmac('sha256', shared).update(`hwa hello rank ${rank} routing id `).update(routingId).digest('hex');
}

/** Whether two hex proofs are equal, in constant time. */
export function sameProof(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
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
