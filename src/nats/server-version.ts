/**
 * Which nats-server the runtime runs on. The versions live in package.json (`natsServer`), the one
 * place scripts/install-deps.sh reads them too: `pinned` is the release every test, bench and
 * deploy/ config runs and the project builds from its Go module; `minimum` is the oldest release a
 * node or gateway accepts in a cluster (docs/operations.md, "The NATS server", says why each).
 */
import { PACKAGE } from '../project.js';

const versions = PACKAGE.natsServer;
export const PINNED_SERVER_VERSION: string = versions.pinned;
export const MINIMUM_SERVER_VERSION: string = versions.minimum;

/** Known server bugs that break what the runtime relies on, each with the release that fixed it. */
const KNOWN_BUGS: readonly { fixedIn: string; text: string }[] = [
  {
    fixedIn: '2.9.21',
    text:
      'in a cluster it accepts more than one concurrent revision-checked KV update (nats-io/nats-server#4320), ' +
      'and shard leases, fencing, journal appends and running counts all rest on that check',
  },
  { fixedIn: '2.9.16', text: 'a replicated KV store can answer stale reads after it restarts (nats-io/nats-server#4171)' },
];

/** `2.14.10` -> [2, 14, 10]; a pre-release or build suffix is ignored. */
export function parseVersion(text: string): [number, number, number] | null {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  return m === null ? null : [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  if (x === null || y === null) throw new Error(`not a version: ${x === null ? a : b}`);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/** What the server's INFO says that matters here. */
export interface ServerInfoLike {
  version: string;
  /** The cluster's name: set when the server is part of a cluster (routes). */
  cluster?: string;
  server_name?: string;
}

export type VersionVerdict =
  | { kind: 'ok' }
  /** Below the minimum on a single server: run, but say so. */
  | { kind: 'warn'; message: string }
  /** Below the minimum in a cluster: refuse to start. */
  | { kind: 'refuse'; message: string };

/**
 * The verdict on a server's version. A cluster below the minimum is refused, because the bugs
 * below it break the single-writer guarantee only there; a single server is run with a warning
 * (development machines with an older package keep working).
 */
export function judgeServerVersion(info: ServerInfoLike, minimum = MINIMUM_SERVER_VERSION): VersionVerdict {
  const version = info.version;
  if (parseVersion(version) !== null && compareVersions(version, minimum) >= 0) return { kind: 'ok' };
  const clustered = info.cluster !== undefined && info.cluster !== '';
  const bugs = parseVersion(version) === null ? [] : KNOWN_BUGS.filter((b) => compareVersions(version, b.fixedIn) < 0);
  const why = bugs.length > 0 ? bugs.map((b) => `${b.text}; fixed in ${b.fixedIn}`).join('. Also, ') : `activeflow is built and tested on ${PINNED_SERVER_VERSION} and supports ${minimum} or later`;
  const where = info.server_name === undefined ? '' : ` (${info.server_name})`;
  const fix = `Upgrade the NATS servers to ${minimum} or later (${PINNED_SERVER_VERSION} is the tested release; \`bash scripts/install-deps.sh\` builds it)`;
  return clustered
    ? { kind: 'refuse', message: `nats-server ${version}${where} is older than ${minimum}, the minimum in a cluster: ${why}. ${fix}.` }
    : { kind: 'warn', message: `nats-server ${version}${where} is older than ${minimum}: ${why}. A single server runs, but ${fix}.` };
}

export class ServerVersionError extends Error {
  override readonly name = 'ServerVersionError';
}
