/**
 * Early hints of a dead node: with a user of the system account, the servers' disconnect events
 * (`$SYS.ACCOUNT.<account>.DISCONNECT`) say within milliseconds that a node's connection closed
 * (a kill -9; a hung node after the servers' ping checks). It is only a hint (the node may be
 * reconnecting elsewhere): the lease stays the verdict, the hint only stops survivors waiting for
 * their next reconcile once the lease has run out.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../log.js';
import { connectNats, type TlsFiles } from '../nats/connect.js';
import { decodeJson } from '../store/codec.js';

/** The connection name a node uses: `connectNats(servers, nodeConnectionName(id))`. */
export function nodeConnectionName(nodeId: string): string {
  return `activeflow-node-${nodeId}`;
}

interface DisconnectEvent {
  server?: { id?: string };
  client?: { name?: string; id?: number };
  reason?: string;
}

export class DisconnectHints {
  private constructor(private readonly nc: NatsConnection) {}

  static async start(
    servers: string[],
    credentials: { user: string; pass: string },
    nodeId: string,
    /** `conn`: the connection that closed, `<server id>/<client id>` as the node names its own (null if the event lacks it). */
    onNodeDisconnected: (nodeId: string, conn: string | null, reason: string) => void,
    log: Logger,
    tls?: TlsFiles,
  ): Promise<DisconnectHints> {
    const nc = await connectNats(servers, `${nodeConnectionName(nodeId)}-events`, credentials, tls);
    const prefix = nodeConnectionName('');
    nc.subscribe('$SYS.ACCOUNT.*.DISCONNECT', {
      callback: (_e, msg) => {
        try {
          const event = decodeJson(msg.data) as DisconnectEvent;
          const name = event.client?.name ?? '';
          const conn = event.server?.id !== undefined && event.client?.id !== undefined ? `${event.server.id}/${event.client.id}` : null;
          if (name.startsWith(prefix) && !name.endsWith('-events')) onNodeDisconnected(name.slice(prefix.length), conn, event.reason ?? '');
        } catch (e) {
          log.debug({ event: 'disconnect_event_unreadable', err: e });
        }
      },
    });
    await nc.flush();
    log.info({ event: 'disconnect_hints_on' }, "listening to the servers' disconnect events");
    return new DisconnectHints(nc);
  }

  async stop(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }
}
