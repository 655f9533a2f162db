/**
 * NATS users per role, with least privilege: each may publish and subscribe to what its job needs
 * and nothing else, enforced by the server (a violation is refused, not just unused). Defined once
 * here; the server configurations in deploy/ and the tests are generated from it.
 *
 * The server checks publish permissions on the subject *after* the account's mapping, so the
 * per-activeflow verbs are allowed on `activeflow.shard.*.*.<verb>`, which is what
 * `activeflow.v1.<id>.<verb>` becomes.
 */

import { SUBJECTS, type RelayRole } from '../api/subjects.js';
import { EVENTS_STREAM, WEBHOOK_CONSUMER } from '../store/buckets.js';

export const ROLES = ['node', 'gateway', 'call-service', 'operator'] as const;
export type Role = (typeof ROLES)[number];

/**
 * Each role receives replies on its own inboxes (`_INBOX_<role>.<id>`), and may subscribe to
 * those only: with the shared `_INBOX.>`, any client could subscribe to every inbox and read the
 * replies meant for others (another customer's activeflow, a new access key). connectNats sets
 * the prefix when it connects as a role's user.
 */
export const inboxPrefixOf = (role: Role): string => `_INBOX_${role.replace(/-/g, '_')}`;
const inboxes = (role: Role) => `${inboxPrefixOf(role)}.>`;

const verbs = (...vs: string[]) => vs.map((v) => `activeflow.shard.*.*.${v}`);

/**
 * Reading a stream through a relay (src/node/stream-relay.ts): asking a node to open and close one
 * for this role, receiving its deliveries, and answering their flow control. No consumer verb of
 * the JetStream API: whoever may create a consumer may have it deliver to any subject.
 */
const readThroughRelay = (role: RelayRole) => ({
  publish: [SUBJECTS.relay(role, 'open'), SUBJECTS.relay(role, 'close'), '$JS.FC.>'],
  subscribe: [SUBJECTS.relayDeliver(role, '>')],
});

/** The nodes' durable consumers, per stream: another role may not touch them in any way. */
export const NODE_CONSUMERS: Readonly<Record<string, readonly string[]>> = { [EVENTS_STREAM]: [WEBHOOK_CONSUMER] };

/**
 * The flow-control subjects of the nodes' consumers (the server's first and second formats): the
 * one JetStream subject space other roles may publish to (`$JS.FC.>`, for their relays) is
 * closed to these too.
 */
const nodeConsumers = () => Object.entries(NODE_CONSUMERS).flatMap(([stream, names]) => names.flatMap((c) => [`$JS.FC.${stream}.${c}.>`, `$JS.FC.*.*.${stream}.${c}.>`]));

interface Permissions {
  publish: string[];
  subscribe: string[] /** Refused even where `publish` allows. */;
  denyPublish?: string[];
}

export const ROLE_PERMISSIONS: Readonly<Record<Role, Permissions>> = {
  /** Serves the shard and API subjects, writes the buckets and the stream. */
  node: {
    publish: ['activeflow.>', '$JS.API.>', '$KV.>', '$JS.ACK.>', '$JS.FC.>', '$SRV.>'],
    subscribe: ['activeflow.>', 'flow.v1.>', '$SRV.>', inboxes('node')],
  },
  /** The REST gateway: the verbs its endpoints use, flows, the cluster's state, events and access keys through relays. */
  gateway: {
    publish: [
      ...verbs('create', 'get', 'stop', 'delete', 'history', 'variables_get', 'variables_set'),
      'activeflow.v1.list',
      'flow.v1.>',
      'activeflow.admin.v1.nodes',
      'activeflow.admin.v1.shards',
      'activeflow.admin.v1.customers',
      ...readThroughRelay('gateway').publish,
    ],
    subscribe: [inboxes('gateway'), ...readThroughRelay('gateway').subscribe],
    denyPublish: nodeConsumers(),
  },
  /** A reference's service (calls, conversations): drives its activeflows and answers service actions. */
  'call-service': {
    publish: [
      ...verbs('create', 'get', 'next', 'continue', 'execute', 'stop', 'forward', 'push_actions', 'add_actions', 'service_stop', 'variables_get', 'variables_set', 'variables_delete', 'substitute'),
      'activeflow.v1.create',
      'flow.v1.*.get',
    ],
    subscribe: ['activeflow.service.>', inboxes('call-service')],
  },
  /** Operators and their CLI: the admin verbs, reading activeflows and flows, stopping one, following events through relays. */
  operator: {
    publish: ['activeflow.admin.v1.>', ...verbs('get', 'stop', 'history', 'variables_get'), 'activeflow.v1.list', 'flow.v1.list', 'flow.v1.*.get', ...readThroughRelay('operator').publish],
    subscribe: [inboxes('operator'), ...readThroughRelay('operator').subscribe],
    denyPublish: nodeConsumers(),
  },
};

/** Passwords per role: literal (quoted) for development, `$VAR` for a deployment. */
export type RolePasswords = Readonly<Record<Role, string>>;

export const DEV_ROLE_PASSWORDS: RolePasswords = {
  node: '"node-dev-only"',
  gateway: '"gateway-dev-only"',
  'call-service': '"call-service-dev-only"',
  operator: '"operator-dev-only"',
};

const list = (xs: readonly string[]) => `[${xs.map((x) => `"${x}"`).join(', ')}]`;

/** The role users, as entries of an account's `users` list. */
export function roleUsers(passwords: RolePasswords): string[] {
  return ROLES.map((role) => {
    const p = ROLE_PERMISSIONS[role];
    const deny = p.denyPublish === undefined ? '' : `, deny: ${list(p.denyPublish)}`;
    return `{ user: "${role}", password: ${passwords[role]}, permissions: { publish: { allow: ${list(p.publish)}${deny} }, subscribe: { allow: ${list(p.subscribe)} }, allow_responses: true } }`;
  });
}
