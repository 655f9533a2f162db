export { LocalHost, type LocalWorld, type HostReply, type CannedHttp, type CannedService, type PerformedEffect, type ChildRecord, type StoredRecord } from './local-host.js';
