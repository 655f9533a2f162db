/**
 * Where a node may send HTTP on a customer's behalf (`fetch`, `webhook_send`, webhooks). A
 * multi-tenant platform must not let a customer's URL reach what only the cluster can reach: its
 * loopback, private networks, link-local addresses and the clouds' metadata services. Addresses are
 * checked *after* DNS resolution, at the moment of connecting (so a name that resolves to a private
 * address is refused, and a name cannot resolve to a public address when checked and a private one
 * when used), and again for each redirect, which is followed by hand for that reason.
 *
 * An operator allow list (EGRESS_ALLOW: addresses and CIDR ranges) opens what the deny list closes;
 * `npm start` allows loopback so the examples keep working on one machine.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, fetch as undiciFetch, type RequestInit, type Response } from 'undici';

/** What is refused, and how to say it: [range, prefix length, family, what it is]. */
const DENIED: readonly [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'an unspecified ("this network") address'],
  ['10.0.0.0', 8, 'ipv4', 'a private address'],
  ['100.64.0.0', 10, 'ipv4', 'a carrier-grade NAT (shared) address'],
  ['127.0.0.0', 8, 'ipv4', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address (cloud metadata services live here)'],
  ['172.16.0.0', 12, 'ipv4', 'a private address'],
  ['192.0.0.0', 24, 'ipv4', "an IETF protocol address (some clouds' metadata services)"],
  ['192.168.0.0', 16, 'ipv4', 'a private address'],
  ['198.18.0.0', 15, 'ipv4', 'a benchmarking address'],
  ['224.0.0.0', 4, 'ipv4', 'a multicast address'],
  ['240.0.0.0', 4, 'ipv4', 'a reserved or broadcast address'],
  ['::', 128, 'ipv6', 'an unspecified address'],
  ['::1', 128, 'ipv6', 'a loopback address'],
  ['fc00::', 7, 'ipv6', 'a unique local (private) address'],
  ['fe80::', 10, 'ipv6', 'a link-local address'],
  ['ff00::', 8, 'ipv6', 'a multicast address'],
  ['64:ff9b::', 96, 'ipv6', 'a NAT64 address'],
];

/** Each denied range as its own list, so that a refusal can say which it is. */
const DENIED_LISTS = DENIED.map(([net, prefix, family, what]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, family);
  return { list, family, what };
});

export class EgressRefused extends Error {
  override readonly name = 'EgressRefused';
  readonly code = 'EGRESS_REFUSED';
}

/** `::ffff:10.0.0.1` is 10.0.0.1: IPv4-mapped addresses are judged as what they map to. */
function normalise(address: string): { address: string; family: 'ipv4' | 'ipv6' } | null {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1]!, family: 'ipv4' };
  const v = isIP(address);
  return v === 4 ? { address, family: 'ipv4' } : v === 6 ? { address, family: 'ipv6' } : null;
}

export class EgressPolicy {
  private readonly allowed = new BlockList();
  private readonly allowAll: boolean;

  /**
   * `allow`: addresses (`127.0.0.1`, `::1`) and CIDR ranges (`10.1.0.0/16`) to let through even
   * though the deny list has them; `*` turns the policy off (a trusted, single-tenant setup).
   */
  constructor(readonly allow: readonly string[] = []) {
    this.allowAll = allow.includes('*');
    for (const entry of allow) {
      if (entry === '*') continue;
      const [addr, bits] = entry.split('/');
      const n = normalise(addr ?? '');
      if (n === null) throw new Error(`EGRESS_ALLOW: "${entry}" is not an IP address or a CIDR range`);
      if (bits === undefined) this.allowed.addAddress(n.address, n.family);
      else {
        const prefix = Number(bits);
        if (!Number.isInteger(prefix) || prefix < 0 || prefix > (n.family === 'ipv4' ? 32 : 128)) throw new Error(`EGRESS_ALLOW: "${entry}" has a bad prefix length`);
        this.allowed.addSubnet(n.address, prefix, n.family);
      }
    }
  }

  /** Why `address` may not be called, or null when it may. */
  refusal(address: string): string | null {
    if (this.allowAll) return null;
    const n = normalise(address);
    if (n === null) return `${address} is not an IP address`;
    if (this.allowed.check(n.address, n.family)) return null;
    for (const { list, family, what } of DENIED_LISTS) {
      if (family === n.family && list.check(n.address, n.family)) return `${address} is ${what}; the node calls only public addresses (EGRESS_ALLOW opens others)`;
    }
    return null;
  }

  /** The URL's host when it is an IP literal and refused; names are checked when they resolve. */
  private refuseLiteral(url: URL): void {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) {
      const why = this.refusal(host);
      if (why !== null) throw new EgressRefused(`egress refused: ${why}`);
    }
  }

  /** A DNS lookup that refuses a name resolving to a refused address (any of them). */
  private readonly lookup = (hostname: string, options: object, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      for (const a of addresses) {
        const why = this.refusal(a.address);
        if (why !== null) return callback(new EgressRefused(`egress refused: ${hostname} resolves to ${why}`), []);
      }
      const all = (options as { all?: boolean }).all === true;
      return all ? callback(null, addresses) : callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  /** One connection pool for every call this policy governs. */
  private readonly dispatcher = new Agent({ connect: { lookup: this.lookup as never } });

  /**
   * fetch under the policy: each URL of the redirect chain is checked (literals here, names at
   * connect), at most `maxRedirects` hops. A refusal throws EgressRefused.
   */
  async fetch(input: string | URL, init: RequestInit & { maxRedirects?: number } = {}): Promise<Response> {
    let url = new URL(input);
    let method = init.method ?? 'GET';
    let body = init.body;
    for (let hop = 0; ; hop++) {
      this.refuseLiteral(url);
      let response: Response;
      try {
        response = await undiciFetch(url, { ...init, method, body, redirect: 'manual', dispatcher: this.dispatcher });
      } catch (e) {
        const cause = (e as { cause?: unknown }).cause;
        if (cause instanceof EgressRefused) throw cause;
        throw e;
      }
      const location = response.headers.get('location');
      if (response.status < 300 || response.status > 399 || location === null) return response;
      await response.body?.cancel();
      if (hop >= (init.maxRedirects ?? 5)) throw new Error(`more than ${init.maxRedirects ?? 5} redirects`);
      url = new URL(location, url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`a redirect to ${url.protocol} is not followed`);
      // As browsers do: 303 (and 301/302 after a POST) become a GET without a body.
      if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
      }
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
