/**
 * What a run leaves outside its run folder, and its removal: the launcher's ipc socket file in the
 * OS temp folder (`hwa-<pid>-<8 hex>.sock`; libzmq leaves it when the socket closes) and, with
 * `--transport shm`, the tensor folder in /dev/shm (removed by @hwa/protocol's SharedTensorFiles). A process
 * killed with SIGKILL removes nothing, so every start also removes what dead runs left.
 */
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isProcessAlive, removeStaleSharedDirs } from '@hwa/protocol';

const SOCKET = /^hwa-(\d+)-[0-9a-f]{8}\.sock$/;

/** A fresh ipc endpoint for this process's coordinator, in the OS temp folder. */
export function launcherSocket(): string {
  return `ipc://${join(tmpdir(), `hwa-${process.pid}-${randomBytes(4).toString('hex')}.sock`)}`;
}

/** Removes the socket file of an `ipc://` endpoint (a no-op for other transports). */
export function removeSocketFile(endpoint: string): void {
  if (endpoint.startsWith('ipc://')) rmSync(endpoint.slice('ipc://'.length), { force: true });
}

/** Removes socket files and shared-memory folders whose process no longer runs; returns their paths. */
export function removeStaleLeftovers(root: string = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(root);
  } catch {
    // no temp folder to look at
  }
  for (const name of names) {
    const m = SOCKET.exec(name);
    if (!m || Number(m[1]) === process.pid || isProcessAlive(Number(m[1]))) continue;
    rmSync(join(root, name), { force: true });
    removed.push(join(root, name));
  }
  return [...removed, ...removeStaleSharedDirs()];
}

