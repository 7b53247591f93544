import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '@hwa/core';
import {
  CIFAR10_RECORD_BYTES,
  DATASET_SOURCES,
  download,
  loadDataset,
  type DownloadLog,
} from '@hwa/engine';
import { dataError } from '../helpers/errors.js';
import { tar, tarMember } from '../helpers/tar.js';

// ---------- fixtures made by code ----------

function idxImages(count: number, h: number, w: number): Buffer {
  const b = Buffer.alloc(16 + count * h * w);
  b.writeUInt32BE(0x803, 0);
  b.writeUInt32BE(count, 4);
  b.writeUInt32BE(h, 8);
  b.writeUInt32BE(w, 12);
  for (let i = 16; i < b.length; i++) b[i] = (i * 13) % 256;
  return b;
}

function idxLabels(count: number): Buffer {
  const b = Buffer.alloc(8 + count);
  b.writeUInt32BE(0x801, 0);
  b.writeUInt32BE(count, 4);
  for (let i = 0; i < count; i++) b[8 + i] = i % 10;
  return b;
}

/** The four gzip files of an MNIST-like set, keyed by their published names. */
function mnistLikeGz(train: number, test: number): Record<string, Buffer> {
  return {
    'train-images-idx3-ubyte.gz': gzipSync(idxImages(train, 28, 28)),
    'train-labels-idx1-ubyte.gz': gzipSync(idxLabels(train)),
    't10k-images-idx3-ubyte.gz': gzipSync(idxImages(test, 28, 28)),
    't10k-labels-idx1-ubyte.gz': gzipSync(idxLabels(test)),
  };
}

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');
const md5s = (files: Record<string, Buffer>): Record<string, string> =>
  Object.fromEntries(Object.entries(files).map(([k, v]) => [k, md5(v)]));

/** One ustar header block + data padded to 512 bytes. */

function cifarRecords(count: number, labelOffset: number): Buffer {
  const b = Buffer.alloc(count * CIFAR10_RECORD_BYTES);
  for (let r = 0; r < count; r++) {
    b[r * CIFAR10_RECORD_BYTES] = (r + labelOffset) % 10;
    for (let i = 1; i < CIFAR10_RECORD_BYTES; i++) b[r * CIFAR10_RECORD_BYTES + i] = (r + i) % 256;
  }
  return b;
}

/** A small archive shaped like cifar-10-binary.tar.gz (3 records per batch), plus members that must be ignored. */
function cifarArchive(): Buffer {
  const folder = 'cifar-10-batches-bin';
  const members = [tarMember(`${folder}/`, new Uint8Array(0), '5')];
  for (let f = 1; f <= 5; f++) members.push(tarMember(`${folder}/data_batch_${f}.bin`, cifarRecords(3, f)));
  members.push(tarMember(`${folder}/test_batch.bin`, cifarRecords(3, 0)));
  members.push(tarMember(`${folder}/batches.meta.txt`, Buffer.from('airplane\nautomobile\n')));
  members.push(tarMember(`${folder}/readme.html`, Buffer.from('<html/>')));
  members.push(tarMember('../escape.bin', Buffer.from('nope')));
  return gzipSync(tar(...members));
}

/** A fetch that serves `files` by the last path segment of the URL, 404 otherwise, and records the URLs. */
function fakeFetch(files: Record<string, Uint8Array>, seen: string[] = []): typeof fetch {
  return (async (input: string | URL | Request) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    seen.push(url);
    const body = files[url.slice(url.lastIndexOf('/') + 1)];
    if (body === undefined) return new Response('no such key', { status: 404, statusText: 'Not Found' });
    return new Response(body, { headers: { 'content-length': String(body.length) } });
  }) as typeof fetch;
}

/** A fetch that fails the way undici does when there is no network: TypeError('fetch failed') with a cause. */
function offlineFetch(code: 'ECONNREFUSED' | 'ENOTFOUND', host: string): typeof fetch {
  return (async () => {
    const message = code === 'ENOTFOUND' ? `getaddrinfo ENOTFOUND ${host}` : 'connect ECONNREFUSED 52.216.8.8:443';
    const syscall = code === 'ENOTFOUND' ? 'getaddrinfo' : 'connect';
    const cause = Object.assign(new Error(message), { code, syscall });
    throw new TypeError('fetch failed', { cause });
  }) as typeof fetch;
}

function capture(): { log: DownloadLog; events: string[] } {
  const events: string[] = [];
  return { events, log: { info: (fields) => events.push(String(fields.event)) } };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hwa-dl-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

// ---------- tests ----------

describe('download: MNIST and Fashion-MNIST', () => {
  it('fetches the four gzip files from the published host, stores them raw, and loadDataset reads them', async () => {
    const files = mnistLikeGz(30, 10);
    const seen: string[] = [];
    const { log, events } = capture();
    const fetch = fakeFetch(files, seen);
    const result = await download('mnist', dir, { fetch, md5: md5s(files), log, progressEveryMs: 0 });
    expect(seen).toEqual(Object.keys(files).map((f) => `https://ossci-datasets.s3.amazonaws.com/mnist/${f}`));
    expect(readdirSync(dir).sort()).toEqual(
      ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte', 'train-images-idx3-ubyte', 'train-labels-idx1-ubyte'],
    );
    expect(result.files).toHaveLength(4);
    expect(result.bytesFetched).toBe(Object.values(files).reduce((a, b) => a + b.length, 0));
    expect(readFileSync(join(dir, 'train-labels-idx1-ubyte'))).toEqual(idxLabels(30));
    expect(events).toContain('download.started');
    expect(events).toContain('download.progress');
    expect(events).toContain('download.finished');

    const { train, test } = await loadDataset('mnist', { dir });
    expect([train.count, test.count]).toEqual([30, 10]);
  });

  it('uses the Fashion-MNIST host, or a mirror when given one', async () => {
    const files = mnistLikeGz(10, 10);
    const seen: string[] = [];
    await download('fashion-mnist', dir, { fetch: fakeFetch(files, seen), md5: md5s(files) });
    expect(seen[0]).toBe('http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz');
    const mirrored: string[] = [];
    const baseUrl = 'https://mirror.example/fm';
    await download('fashion-mnist', dir, { fetch: fakeFetch(files, mirrored), md5: md5s(files), baseUrl });
    expect(mirrored[0]).toBe('https://mirror.example/fm/train-images-idx3-ubyte.gz');
    expect((await loadDataset('fashion-mnist', { dir })).train.count).toBe(10);
  });

  it('rejects bytes whose MD5 differs from the published one and leaves no file behind', async () => {
    // Generated files cannot match the real MNIST checksums, so the default check must fail.
    const message = await dataError(download('mnist', dir, { fetch: fakeFetch(mnistLikeGz(5, 5)) }));
    expect(message).toContain('https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz: MD5');
    expect(message).toContain(`expected ${DATASET_SOURCES.mnist.files[0].md5}`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rejects a verified download that is not valid IDX, writing nothing under the final name', async () => {
    const files = mnistLikeGz(5, 5);
    files['train-images-idx3-ubyte.gz'] = gzipSync(idxImages(5, 28, 28).subarray(0, 500));
    const message = await dataError(download('mnist', dir, { fetch: fakeFetch(files), md5: md5s(files) }));
    expect(message).toContain('train-images-idx3-ubyte');
    expect(message).toContain('truncated');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reports a download that breaks off midway, and leaves no partial file', async () => {
    let sent = false;
    const breaking = (async () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            if (!sent) {
              sent = true;
              controller.enqueue(new Uint8Array(1000));
            } else controller.error(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
          },
        }),
      )) as typeof fetch;
    const message = await dataError(download('mnist', dir, { fetch: breaking }));
    expect(message).toContain('broke off after 1000 bytes');
    expect(message).toContain('other side closed');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reports an HTTP error status with the URL', async () => {
    const message = await dataError(download('mnist', dir, { fetch: fakeFetch({}) }));
    const url = 'https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz';
    expect(message).toContain(`${url} answered HTTP 404 Not Found`);
    expect(message).toContain(`into ${dir}`);
  });
});

describe('download without a network', () => {
  it('says which host could not be reached, why, and how to get the files by hand (ECONNREFUSED)', async () => {
    const message = await dataError(download('mnist', dir, { fetch: offlineFetch('ECONNREFUSED', 'x') }));
    expect(message).toBe(
      'could not reach ossci-datasets.s3.amazonaws.com (no network?): connect ECONNREFUSED 52.216.8.8:443; ' +
        'download the files by hand from https://ossci-datasets.s3.amazonaws.com/mnist/ (train-images-idx3-ubyte.gz, ' +
        `train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into ${dir}`,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('does the same for a DNS failure (ENOTFOUND) and for the CIFAR-10 archive', async () => {
    const host = 'www.cs.toronto.edu';
    const message = await dataError(download('cifar10', dir, { fetch: offlineFetch('ENOTFOUND', host) }));
    expect(message).toContain(`could not reach ${host} (no network?): getaddrinfo ENOTFOUND ${host}`);
    const url = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
    expect(message).toContain(`download the files by hand from ${url} into ${dir}`);
    const fmHost = 'fashion-mnist.s3-website.eu-central-1.amazonaws.com';
    const fm = await dataError(download('fashion-mnist', dir, { fetch: offlineFetch('ENOTFOUND', fmHost) }));
    expect(fm).toContain(`could not reach ${fmHost} (no network?): getaddrinfo ENOTFOUND ${fmHost}`);
  });
});

describe('download: CIFAR-10', () => {
  it('verifies and unpacks the binary tarball into cifar-10-batches-bin, which loadDataset reads', async () => {
    const archive = cifarArchive();
    const seen: string[] = [];
    const { log, events } = capture();
    const result = await download('cifar10', dir, {
      fetch: fakeFetch({ 'cifar-10-binary.tar.gz': archive }, seen),
      md5: { 'cifar-10-binary.tar.gz': md5(archive) },
      log,
    });
    expect(seen).toEqual(['https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz']);
    expect(events).toContain('archive.unpacked');
    // The tarball is gone, unknown and escaping members were not written.
    expect(readdirSync(dir)).toEqual(['cifar-10-batches-bin']);
    expect(existsSync(join(dir, '..', 'escape.bin'))).toBe(false);
    expect(readdirSync(join(dir, 'cifar-10-batches-bin')).sort()).toEqual([
      'batches.meta.txt',
      'data_batch_1.bin',
      'data_batch_2.bin',
      'data_batch_3.bin',
      'data_batch_4.bin',
      'data_batch_5.bin',
      'test_batch.bin',
    ]);
    expect(result.files).toHaveLength(7);
    const { train, test } = await loadDataset('cifar10', { dir });
    expect([train.count, test.count]).toEqual([15, 3]);
    expect([...train.labels.subarray(0, 4)]).toEqual([1, 2, 3, 2]);
  });

  it('rejects an archive without the batch files', async () => {
    const archive = gzipSync(tar(tarMember('cifar-10-batches-py/data_batch_1', Buffer.from('pickle'))));
    const message = await dataError(
      download('cifar10', dir, {
        fetch: fakeFetch({ 'cifar-10-binary.tar.gz': archive }),
        md5: { 'cifar-10-binary.tar.gz': md5(archive) },
      }),
    );
    expect(message).toContain('lacks cifar-10-batches-bin/data_batch_1.bin');
    expect(readdirSync(dir)).toEqual([]);
  });
});

it('refuses to download the synthetic set with a ConfigError', async () => {
  await expect(download('synthetic' as 'mnist', dir)).rejects.toBeInstanceOf(ConfigError);
});
