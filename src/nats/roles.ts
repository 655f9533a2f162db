/**
 * NATS users per role, with least privilege: each may publish and subscribe to what its job needs
 * and nothing else, enforced by the server (a violation is refused, not just unused). Defined once
 * here; the server configurations in deploy/ and the tests are generated from it.
 *
 * The server checks publish permissions on the subject *after* the account's mapping, so the
 * per-activeflow verbs are allowed on `activeflow.shard.*.*.<verb>`, which is what
 * `activeflow.v1.<id>.<verb>` becomes.
 */

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
 * JetStream requests to read one stream with consumers of its own (watch, history, the WebSocket).
 * Only the form of CONSUMER.CREATE that names the consumer in the subject is allowed (not the
 * older `$JS.API.CONSUMER.CREATE.<stream>` with the name in the body), so that the deny list below
 * can keep a role off a consumer by its name.
 */
const readStream = (stream: string) => [
  `$JS.API.STREAM.INFO.${stream}`,
  `$JS.API.CONSUMER.CREATE.${stream}.>`,
  `$JS.API.CONSUMER.INFO.${stream}.>`, `$JS.API.CONSUMER.DELETE.${stream}.>`,
  `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`, `$JS.ACK.${stream}.>`,
];

/** The nodes' durable consumers, per stream: another role may not create, read, pull, ack or delete them. */
export const NODE_CONSUMERS: Readonly<Record<string, readonly string[]>> = { [EVENTS_STREAM]: [WEBHOOK_CONSUMER] };

/** Every JetStream subject that names one of the nodes' consumers (API verbs of one or two tokens, acks). */
const nodeConsumers = () => Object.entries(NODE_CONSUMERS).flatMap(([stream, names]) => names.flatMap((c) => [
  `$JS.API.CONSUMER.*.${stream}.${c}`, `$JS.API.CONSUMER.*.${stream}.${c}.>`, `$JS.API.CONSUMER.*.*.${stream}.${c}`,
  `$JS.API.CONSUMER.*.*.${stream}.${c}.>`, `$JS.ACK.${stream}.${c}.>`, `$JS.FC.${stream}.${c}.>`,
]));

interface Permissions { publish: string[]; subscribe: string[]; /** Refused even where `publish` allows. */ denyPublish?: string[] }

export const ROLE_PERMISSIONS: Readonly<Record<Role, Permissions>> = {
  /** Serves the shard and API subjects, writes the buckets and the stream. */
  node: {
    publish: ['activeflow.>', '$JS.API.>', '$KV.>', '$JS.ACK.>', '$JS.FC.>', '$SRV.>'],
    subscribe: ['activeflow.>', 'flow.v1.>', '$SRV.>', inboxes('node')],
  },
  /** The REST gateway: the verbs its endpoints use, flows, the cluster's state, events and access keys to read. */
  gateway: {
    publish: [
      ...verbs('create', 'get', 'stop', 'delete', 'history', 'variables_get', 'variables_set'),
      'activeflow.v1.list', 'flow.v1.>', 'activeflow.admin.v1.nodes', 'activeflow.admin.v1.shards', 'activeflow.admin.v1.customers',
      '$JS.API.INFO', ...readStream(EVENTS_STREAM), ...readStream('KV_af_accesskeys'), '$JS.FC.>',
    ],
    subscribe: [inboxes('gateway')],
    denyPublish: nodeConsumers(),
  },
  /** A reference's service (calls, conversations): drives its activeflows and answers service actions. */
  'call-service': {
    publish: [
      ...verbs('create', 'get', 'next', 'continue', 'execute', 'stop', 'forward', 'push_actions', 'add_actions', 'service_stop', 'variables_get', 'variables_set', 'variables_delete', 'substitute'),
      'activeflow.v1.create', 'flow.v1.*.get',
    ],
    subscribe: ['activeflow.service.>', inboxes('call-service')],
  },
  /** Operators and their CLI: the admin verbs, reading activeflows and flows, stopping one, following events. */
  operator: {
    publish: [
      'activeflow.admin.v1.>', ...verbs('get', 'stop', 'history', 'variables_get'), 'activeflow.v1.list', 'flow.v1.list', 'flow.v1.*.get',
      '$JS.API.INFO', ...readStream(EVENTS_STREAM), '$JS.FC.>',
    ],
    subscribe: [inboxes('operator')],
    denyPublish: nodeConsumers(),
  },
};

/** Passwords per role: literal (quoted) for development, `$VAR` for a deployment. */
export type RolePasswords = Readonly<Record<Role, string>>;

export const DEV_ROLE_PASSWORDS: RolePasswords = {
  node: '"node-dev-only"', gateway: '"gateway-dev-only"', 'call-service': '"call-service-dev-only"', operator: '"operator-dev-only"',
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
