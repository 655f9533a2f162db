/**
 * Access keys of the REST gateway: each one bound to one customer, stored in `af_accesskeys`.
 * Only a key's SHA-256 is stored: the token itself is shown once, when it is created, so a copy
 * of the bucket (a backup, a replica) does not give anyone access.
 *
 * Operators manage keys through the nodes (`activeflow.admin.v1.accesskeys.*`, CLI `accesskeys`);
 * gateways only read them, following the bucket's stream into memory: a request is checked
 * without a round trip, and a deleted key stops working as soon as its delete arrives.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { NIL, Timestamp, Uuid } from '../../machines/index.js';
import { ActiveflowError } from '../errors.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import { RelayReader, type RelayMessage } from '../nats/relay-reader.js';
import { BUCKETS } from '../store/buckets.js';
import { valuesNow } from '../store/kv-keys.js';

/** Tokens look like `afk_<43 characters>`: recognizable in logs and secret scanners. */
const TOKEN_PREFIX = 'afk_';

/**
 * `customer`: everything is scoped to its customer. `operator`: any customer's data (named with
 * `?customer_id=`), the cluster's nodes and shards, and the dashboard's full view.
 */
export const KeyRole = z.enum(['customer', 'operator']);

export const StoredAccessKey = z.object({
  id: Uuid,
  role: KeyRole.default('customer'),
  /** The nil UUID for an operator key. */
  customer_id: Uuid,
  name: z.string(),
  /** hex SHA-256 of the token */
  token_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** The token's first characters, to tell keys apart in a list. */
  token_hint: z.string(),
  tm_create: Timestamp,
});
export type StoredAccessKey = z.infer<typeof StoredAccessKey>;

/** What a list shows: never the hash. */
export type AccessKeyInfo = Omit<StoredAccessKey, 'token_sha256'>;

export const AccessKeyRequests = {
  create: z
    .strictObject({ customer_id: Uuid.optional(), operator: z.boolean().optional(), name: z.string().max(255).optional() })
    .refine((r) => (r.customer_id !== undefined) !== (r.operator === true), { message: "give customer_id (a customer's key) or operator: true (an operator's key), not both", path: ['customer_id'] }),
  list: z.strictObject({ customer_id: Uuid.optional() }),
  delete: z.strictObject({ id: Uuid }),
};

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function info(k: StoredAccessKey): AccessKeyInfo {
  const { token_sha256: _h, ...rest } = k;
  return rest;
}

/** Create, list and delete (the nodes' side). */
export class AccessKeyStore {
  constructor(private readonly kv: KV) {}

  /** A customer's key, or with `customerId` null an operator's. */
  async create(customerId: string | null, name: string, now: string): Promise<AccessKeyInfo & { token: string }> {
    const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const key: StoredAccessKey = {
      id: randomUUID(),
      role: customerId === null ? 'operator' : 'customer',
      customer_id: customerId ?? NIL,
      name,
      token_sha256: hashToken(token),
      token_hint: `${token.slice(0, 8)}...`,
      tm_create: now,
    };
    await this.kv.create(`key.${key.id}`, encodeJson(key));
    return { ...info(key), token };
  }

  async list(customerId?: string): Promise<AccessKeyInfo[]> {
    const out: AccessKeyInfo[] = [];
    for (const value of (await valuesNow(this.kv, 'key.*')).values()) {
      const parsed = StoredAccessKey.safeParse(decodeJson(value));
      if (parsed.success && (customerId === undefined || parsed.data.customer_id === customerId)) out.push(info(parsed.data));
    }
    return out.sort((a, b) => a.tm_create.localeCompare(b.tm_create) || a.id.localeCompare(b.id));
  }

  async delete(id: string): Promise<AccessKeyInfo> {
    const e = await this.kv.get(`key.${id}`);
    if (e === null || e.operation !== 'PUT') throw new ActiveflowError('not_found', `access key ${id} not found`);
    const key = StoredAccessKey.parse(decodeJson(e.value));
    await this.kv.delete(`key.${id}`, { previousSeq: e.revision });
    return info(key);
  }
}

/**
 * Every key, by hash, kept current by reading the bucket's stream (the gateways' side): the last
 * value of each key, then every change. A gateway may not make consumers (docs/operations.md), so
 * it reads through a relay that a node opens for it.
 */
export class AccessKeyCache {
  private readonly byHash = new Map<string, StoredAccessKey>();
  private readonly hashById = new Map<string, string>();
  /** Told of each key that stops being valid (deleted, or its hash replaced). */
  private readonly revoked = new Set<(keyId: string) => void>();

  private constructor(private readonly reader: RelayReader) {}

  /** Resolves once every stored key is read; refused while no node answers (they open relays). */
  static async start(nc: NatsConnection, retryForMs = 5_000): Promise<AccessKeyCache> {
    const prefix = `$KV.${BUCKETS.accessKeys}.`;
    const reader = await RelayReader.open(nc, 'gateway', { stream: 'accesskeys', filter: `${prefix}key.*`, deliver: 'last_per_subject' }, retryForMs);
    const cache = new AccessKeyCache(reader);
    void (async () => {
      for await (const m of reader) cache.apply(m.subject.slice(prefix.length), m);
    })();
    await reader.caughtUp;
    return cache;
  }

  private apply(key: string, m: RelayMessage): void {
    const id = key.slice('key.'.length);
    const old = this.hashById.get(id);
    if (old !== undefined) this.byHash.delete(old);
    this.hashById.delete(id);
    // A delete or purge is a message with a KV-Operation header and no value.
    const parsed = m.headers?.get('KV-Operation') ? null : StoredAccessKey.safeParse(decodeJson(m.data));
    if (parsed?.success === true) {
      this.byHash.set(parsed.data.token_sha256, parsed.data);
      this.hashById.set(id, parsed.data.token_sha256);
    }
    if (old !== undefined && (parsed?.success !== true || parsed.data.token_sha256 !== old)) {
      for (const listener of this.revoked) listener(id);
    }
  }

  /** Calls `listener` with the id of each key that stops being valid; returns the way to stop. */
  onRevoked(listener: (keyId: string) => void): () => void {
    this.revoked.add(listener);
    return () => this.revoked.delete(listener);
  }

  /** The key a token belongs to, or null. */
  lookup(token: string): StoredAccessKey | null {
    return this.byHash.get(hashToken(token)) ?? null;
  }

  stop(): void {
    this.reader.stop();
  }
}
