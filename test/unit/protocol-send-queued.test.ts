/**
 * sendQueued's rule on a socket whose sends fail as scripted: EAGAIN on an open socket without a send timeout
 * is tried again; anything else rejects at once. (Real sockets: test/integration/protocol-zeromq.test.ts.)
 */
import { sendQueued, type QueueingSocket } from '@hwa/protocol';
import { expect, it } from 'vitest';

/** A socket whose n-th send rejects with `codes[n]` (undefined = succeeds). */
function scripted(codes: (string | undefined)[], o: { closed?: boolean; sendTimeout?: number } = {}) {
  const sent: string[] = [];
  const socket: QueueingSocket<string> & { sent: string[] } = {
    closed: o.closed ?? false,
    sendTimeout: o.sendTimeout ?? -1,
    sent,
    async send(message: string) {
      const code = codes[sent.length];
      sent.push(message);
      if (code) throw Object.assign(new Error(`failed: ${code}`), { code });
    },
  };
  return socket;
}

it('tries a send that met EAGAIN again until it is queued', async () => {
  const socket = scripted(['EAGAIN', 'EAGAIN', undefined]);
  await sendQueued(socket, 'm');
  expect(socket.sent).toEqual(['m', 'm', 'm']);
});

it('rejects at once on other errors, on a closed socket, and where a send timeout makes EAGAIN a timeout', async () => {
  const other = scripted(['EHOSTUNREACH']);
  await expect(sendQueued(other, 'm')).rejects.toMatchObject({ code: 'EHOSTUNREACH' });
  const closed = scripted(['EAGAIN'], { closed: true });
  await expect(sendQueued(closed, 'm')).rejects.toMatchObject({ code: 'EAGAIN' });
  const timed = scripted(['EAGAIN'], { sendTimeout: 100 });
  await expect(sendQueued(timed, 'm')).rejects.toMatchObject({ code: 'EAGAIN' });
  expect([other.sent, closed.sent, timed.sent].map((s) => s.length)).toEqual([1, 1, 1]);
});
