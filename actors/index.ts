export { LocalHost, type LocalWorld, type HostReply, type CannedHttp, type CannedService, type PerformedEffect, type ChildRecord } from './local-host.js';
