/** Hosts of activeflow actors and the effects they perform. Other folders import from here only. */
export { ActiveflowActor, type ActorDeps, type ActorReply, type CreationAdmission, type EffectRunner } from './activeflow-actor.js';
export { ActorRegistry } from './actor-registry.js';
export { EgressPolicy, EgressRefused } from './effects/egress-policy.js';
export { performHttp, type HttpLimits } from './effects/http-request.js';
export { performService } from './effects/service-request.js';
export { LocalHost, type CannedHttp, type CannedService, type ChildRecord, type HostReply, type LocalWorld, type PerformedEffect, type StoredRecord } from './local-host.js';
export { persistedSnapshot } from './persisted-snapshot.js';
