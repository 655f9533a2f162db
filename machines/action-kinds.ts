/**
 * The action catalogue (docs/behaviour.md section 5): which medium each type needs, who performs it,
 * and whether its failure ends the activeflow. One table, so availability, dispatch and
 * criticality can never disagree about a type.
 */

export const ACTION_TYPES = [
  'ai_summary',
  'ai_talk',
  'ai_task',
  'amd',
  'answer',
  'beep',
  'block',
  'branch',
  'call',
  'case_create',
  'condition_call_digits',
  'condition_call_status',
  'condition_datetime',
  'condition_variable',
  'confbridge_join',
  'conference_join',
  'connect',
  'conversation_send',
  'digits_receive',
  'digits_send',
  'echo',
  'email_send',
  'empty',
  'external_media_start',
  'external_media_stop',
  'fetch',
  'fetch_flow',
  'goto',
  'hangup',
  'message_send',
  'mute',
  'play',
  'queue_join',
  'recording_start',
  'recording_stop',
  'sleep',
  'stop',
  'stream_echo',
  'talk',
  'transcribe_recording',
  'transcribe_start',
  'transcribe_stop',
  'variable_set',
  'webhook_send',
] as const;
export type ActionType = (typeof ACTION_TYPES)[number];

export const REFERENCE_TYPES = ['', 'call', 'conversation', 'api', 'campaign', 'transcribe', 'recording', 'ai'] as const;
export type ReferenceType = (typeof REFERENCE_TYPES)[number];

/** `none` runs everywhere, `rtc` only for calls, `non_rtc` for every type but `call` and `""`. */
export type Medium = 'none' | 'rtc' | 'non_rtc';

/**
 * - `returned`: handed back to the reference's service (media), which asks `next` again.
 * - `control`: flow control run inside the runtime.
 * - `service`: handed to `activeflow.service.<type>`; its reply may push a stack and set variables.
 * - `http`: an HTTP request performed by the host (`fetch`, `webhook_send`).
 */
export type Dispatch = 'returned' | 'control' | 'service' | 'http';

export interface ActionKind {
  readonly medium: Medium;
  readonly dispatch: Dispatch;
  /** A failure of a critical action ends the activeflow with `end_reason=error`. */
  readonly critical: boolean;
}

const returned = (): ActionKind => ({ medium: 'rtc', dispatch: 'returned', critical: false });
const control = (medium: Medium, critical = true): ActionKind => ({ medium, dispatch: 'control', critical });
const service = (medium: Medium, critical: boolean): ActionKind => ({ medium, dispatch: 'service', critical });

export const ACTION_KINDS: Readonly<Record<ActionType, ActionKind>> = {
  // media, performed by the reference (the call service)
  amd: returned(),
  answer: returned(),
  beep: returned(),
  confbridge_join: returned(),
  digits_receive: returned(),
  digits_send: returned(),
  echo: returned(),
  external_media_start: returned(),
  external_media_stop: returned(),
  hangup: returned(),
  mute: returned(),
  play: returned(),
  recording_start: returned(),
  recording_stop: returned(),
  sleep: returned(),
  stream_echo: returned(),
  talk: returned(),
  transcribe_stop: returned(),
  // flow control
  branch: control('none'),
  condition_datetime: control('none'),
  condition_variable: control('none'),
  condition_call_digits: control('rtc'),
  condition_call_status: control('rtc'),
  empty: control('none', false),
  fetch_flow: control('none'),
  goto: control('none'),
  stop: control('none'),
  variable_set: control('none', false),
  block: control('non_rtc', false),
  fetch: { medium: 'none', dispatch: 'http', critical: true },
  webhook_send: { medium: 'none', dispatch: 'http', critical: false },
  // services
  ai_talk: service('none', true),
  ai_task: service('non_rtc', true),
  ai_summary: service('non_rtc', true),
  call: service('none', true),
  message_send: service('none', true),
  connect: service('rtc', true),
  queue_join: service('rtc', true),
  conference_join: service('rtc', true),
  case_create: service('none', false),
  conversation_send: service('none', false),
  email_send: service('none', false),
  transcribe_recording: service('none', false),
  transcribe_start: service('rtc', false),
};

const MEDIUM_BY_REFERENCE: Readonly<Record<ReferenceType, Medium>> = {
  '': 'none',
  call: 'rtc',
  conversation: 'non_rtc',
  api: 'non_rtc',
  campaign: 'non_rtc',
  transcribe: 'non_rtc',
  recording: 'non_rtc',
  ai: 'non_rtc',
};

export function isActionType(type: string | undefined): type is ActionType {
  return type !== undefined && Object.hasOwn(ACTION_KINDS, type);
}

/**
 * Whether an action of `type` runs for a reference of `referenceType`. Unknown types (for
 * example written by a newer version during a rolling upgrade) are never available: skipped.
 * @example isAvailable('talk', 'api') === false
 */
export function isAvailable(type: string | undefined, referenceType: ReferenceType): boolean {
  if (!isActionType(type)) return false;
  const needed = ACTION_KINDS[type].medium;
  return needed === 'none' || needed === MEDIUM_BY_REFERENCE[referenceType];
}
