/**
 * Admission (docs/protocol.md#sockets): who may act for which rank. A worker checks in with a hello; the rank it names is
 * bound to the connection (ZeroMQ routing id) the hello came on, and from then on a message counts only when
 * it comes on the connection welcomed for the rank it names. CURVE runs also bind each key to its rank (the
 * hello's proof, @hwa/protocol curve.ts) and log the handshakes the ZAP handler refuses.
 *
 * What a refusal tells the peer is chosen so that an unauthenticated stranger learns nothing it could use to
 * pass: never the config hash (with it a stranger would be welcomed), and the differing
 * option values only to a peer that proved its rank's CURVE key — any per-option answer would let a stranger
 * find the options one at a time. The coordinator's own log always names the differences, for the operator.
 *
 * Rejoining (elastic runs, docs/processes.md#elastic-workers): a rank the coordinator dropped is released
 * here, and a new hello for it is decided as a first one. A hello for a rank still in the run is held, not
 * refused: a restarted worker usually checks in before the coordinator has noticed that its old process is
 * gone, and its hello is decided once that rank is released. So a second process never displaces a live one.
 */
import { ProtocolError, diffTraining, type TrainingConfig } from '@hwa/core';
import { helloProof, sameProof, startZapHandler, type CoordinatorCurve, type Header, type HeaderOf, type ZapHandler } from '@hwa/protocol';
import type { Logger } from 'pino';
import type { Context } from 'zeromq';

export interface AdmissionOptions {
  config: TrainingConfig;
  configHash: string;
  /**
   * Floats of the synced vector every worker must exchange. Absent: the first welcomed hello fixes it (a node
   * averager, which holds no model of its own).
   */
  syncSize?: number;
  /** K. */
  workers: number;
  /** The ranks that may check in here (default all K; a node averager admits its node's). */
  ranks?: readonly number[];
  curve?: CoordinatorCurve;
  /** Hold a hello for a rank that is in the run until that rank is released, instead of refusing it. */
  holdRejoins?: boolean;
  log: Logger;
}

/** A hello's outcome: welcomed (the rank is now bound to the connection), or refused with what to tell it. */
export type Verdict = { welcomed: true } | { welcomed: false; held?: false; reason: string; logged: string } | { welcomed: false; held: true; logged: string };

/** A hello held until its rank is released. */
export interface HeldHello {
  identity: Buffer;
  hello: HeaderOf<'hello'>;
}

export class Admission {
  /**
   * The routing id of each welcomed connection, by the rank it checked in as (a node averager's first rank;
   * it speaks for {@link members} ranks from there).
   */
  readonly peers = new Map<number, Buffer>();
  /** How many ranks each welcomed connection speaks for, by the rank it checked in as. */
  readonly members = new Map<number, number>();
  /** The rank each welcomed connection checked in as, by routing id (hex). */
  private readonly rankOfConnection = new Map<string, number>();
  /** Every rank some welcomed connection speaks for. */
  private readonly covered = new Set<number>();
  private readonly expected: readonly number[];
  private zap: ZapHandler | null = null;
  /** Hellos held by the rank they name (see holdRejoins). */
  private readonly held = new Map<number, HeldHello>();
  /** The synced vector's size, from the options or the first welcomed hello. */
  syncSize: number | undefined;

  constructor(private readonly o: AdmissionOptions) {
    this.expected = o.ranks ?? Array.from({ length: o.workers }, (_, r) => r);
    this.syncSize = o.syncSize;
  }

  /** All expected ranks have checked in. */
  get complete(): boolean {
    return this.covered.size === this.expected.length;
  }

  /** The ranks not checked in yet. */
  missingRanks(): number[] {
    return this.expected.filter((r) => !this.covered.has(r));
  }

  /** The ranks connection `rank` speaks for: itself, or a node averager's ranks. */
  ranksOf(rank: number): number[] {
    return Array.from({ length: this.members.get(rank) ?? 1 }, (_, i) => rank + i);
  }

  /** Decides a hello that came on connection `identity`. */
  hello(identity: Buffer, h: HeaderOf<'hello'>): Verdict {
    const refuse = (reason: string, logged = reason): Verdict => ({ welcomed: false, reason, logged });
    const known = this.rankOfConnection.get(identity.toString('hex'));
    if (known !== undefined) return refuse(`this connection has already checked in as rank ${known}`);
    let proven = false;
    if (this.o.curve) {
      const key = this.o.curve.rankKeys?.[h.rank];
      if (key === undefined) return refuse(`there is no worker-${h.rank}.public in the coordinator's --curve-keys folder`);
      proven = h.proof !== undefined && sameProof(h.proof, helloProof(this.o.curve.secretKey, key, h.rank, identity));
      if (!proven)
        return refuse(
          `its hello is not signed with worker-${h.rank}'s CURVE key (a key admits only its own rank): give rank ${h.rank} the key pair worker-${h.rank}.public/.secret`,
        );
    }
    const ranks = Array.from({ length: h.members ?? 1 }, (_, i) => h.rank + i);
    const taken = ranks.find((r) => this.covered.has(r));
    if (taken !== undefined && this.o.holdRejoins && this.peers.has(h.rank) && this.members.get(h.rank) === ranks.length) {
      this.held.set(h.rank, { identity, hello: h });
      return { welcomed: false, held: true, logged: `rank ${h.rank} is still in the run; this hello waits until that rank is dropped` };
    }
    if (taken !== undefined) return refuse(`rank ${taken} has already checked in (from another process); ranks must be unique`);
    const stranger = ranks.find((r) => !this.expected.includes(r));
    if (stranger !== undefined) return refuse(`rank ${stranger} does not check in here (this one admits ranks ${rangeText(this.expected)})`);
    if (h.configHash !== this.o.configHash) {
      const diff = h.config ? diffTraining(this.o.config, h.config as Partial<TrainingConfig>) : [];
      const named = diff.length ? ` (coordinator ≠ worker: ${diff.join('; ')})` : '';
      return refuse(
        `training config differs${proven ? named : " from the coordinator's (its log names the options)"}`,
        `training config differs: coordinator hash ${this.o.configHash}, worker ${h.rank} hash ${h.configHash}${named}`,
      );
    }
    if (this.syncSize !== undefined && h.syncSize !== this.syncSize)
      return refuse(`vector size differs: coordinator ${this.syncSize} floats, worker ${h.rank} ${h.syncSize}`);
    this.syncSize = h.syncSize;
    this.peers.set(h.rank, identity);
    this.members.set(h.rank, ranks.length);
    for (const r of ranks) this.covered.add(r);
    this.rankOfConnection.set(identity.toString('hex'), h.rank);
    return { welcomed: true };
  }

  /**
   * Forgets the connection checked in as `rank` (it was dropped): its messages are no longer accepted, and the
   * rank may check in again. Returns a hello held for that rank, to be decided now.
   */
  release(rank: number): HeldHello | undefined {
    const identity = this.peers.get(rank);
    if (identity) this.rankOfConnection.delete(identity.toString('hex'));
    for (const r of this.ranksOf(rank)) this.covered.delete(r);
    this.peers.delete(rank);
    this.members.delete(rank);
    const held = this.held.get(rank);
    this.held.delete(rank);
    return held;
  }

  /** The connections of held hellos (they are told when the run ends). */
  heldConnections(): Buffer[] {
    return [...this.held.values()].map((h) => h.identity);
  }

  /**
   * The rank a message other than hello acts for: that of the welcomed connection it came on, which its
   * rank field (if any) must name. null: an `error` from a connection that is no welcomed worker, which is
   * logged and must be ignored (else a stranger could stop the run with one), or a held worker's heartbeat.
   * @throws ProtocolError for any other message from such a connection, or a rank field naming another rank.
   */
  sender(identity: Buffer, header: Exclude<Header, HeaderOf<'hello'>>): number | null {
    const rank = this.rankOfConnection.get(identity.toString('hex'));
    if (rank === undefined) {
      // A held hello's worker beats while it waits: alive, but not in the run yet.
      if (header.type === 'heartbeat' && [...this.held.values()].some((h) => h.identity.equals(identity))) return null;
      if (header.type === 'error') {
        this.o.log.warn(
          { event: 'message.ignored', peer: peerName(identity), reason: header.reason.slice(0, 200) },
          `ignored an 'error' message from a connection that is not a welcomed worker (it says: ${JSON.stringify(header.reason.slice(0, 200))})`,
        );
        return null;
      }
      throw new ProtocolError(`'${header.type}' message from a connection that is not a welcomed worker (it never checked in with a hello)`);
    }
    if ('rank' in header && header.rank !== undefined && header.rank !== rank)
      throw new ProtocolError(`'${header.type}' message says rank ${header.rank}, but its connection checked in as rank ${rank}`);
    return rank;
  }

  /**
   * CURVE: starts the ZAP handler of `context`, which admits only the listed worker keys; refused handshakes
   * never reach a message, so they are logged here with the key.
   */
  async startCurve(context: Context, events: { on(event: 'handshake:error:protocol', listener: (e: { address: string; error: Error }) => void): void }): Promise<void> {
    const curve = this.o.curve;
    if (!curve) return;
    const log = this.o.log;
    this.zap = await startZapHandler(context, curve.authorizedKeys, ({ publicKey, address, mechanism }) =>
      log.warn(
        { event: 'worker.unauthorized', publicKey, address, mechanism },
        mechanism === 'CURVE'
          ? `refused a connection from ${address || 'a peer'}: its CURVE key ${publicKey} is not in --curve-keys`
          : `refused a connection from ${address || 'a peer'} without CURVE (${mechanism || 'no security'})`,
      ),
    );
    events.on('handshake:error:protocol', ({ address, error }) =>
      log.warn({ event: 'worker.handshake_failed', address, reason: error.message }, `CURVE handshake with ${address} failed: ${error.message}`),
    );
    log.info({ event: 'curve.enabled', workers: curve.authorizedKeys.length }, `CURVE on: ${curve.authorizedKeys.length} worker keys admitted`);
  }

  close(): void {
    this.zap?.close();
  }
}

/** "2", "2–3" or "0, 2–3, 5": ranks as short ranges. */
export function rangeText(ranks: readonly number[]): string {
  const sorted = [...ranks].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}–${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** How a log line names a connection: "rank 2", or "the node averager of ranks 2–3". */
export function contributorName(rank: number, members: number): string {
  return members > 1 ? `the node averager of ranks ${rank}–${rank + members - 1}` : `rank ${rank}`;
}

/** A routing id for the log: its text when printable and short, else its hex. */
export function peerName(identity: Buffer): string {
  const text = identity.toString('latin1');
  return identity.length <= 48 && /^[\x20-\x7e]+$/.test(text) ? text : `0x${identity.toString('hex').slice(0, 96)}`;
}
