/**
 * Option shapes per action type (VoIPBIN's `models/action/option.go` and the public OpenAPI
 * option schemas). Options stay open (unknown keys are kept, as VoIPBIN keeps them), but the keys
 * we know must have the right JSON type. A string field may carry `${...}` templates; an id field
 * accepts either a UUID or a template, because VoIPBIN decodes options only after substitution.
 */
import { z } from 'zod';
import type { ActionType } from './action-kinds.js';

const UUID_ANY_CASE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const idOrTemplate = z.string().refine((s) => UUID_ANY_CASE.test(s) || s.includes('${'), { message: 'must be a UUID or a ${variable} template' });
const int = z.number().int();
const str = z.string();
const bool = z.boolean();

const Address = z.looseObject({
  type: str.optional(),
  target: str.optional(),
  target_name: str.optional(),
  name: str.optional(),
  detail: str.optional(),
});

const none = z.looseObject({});
const CONDITIONS = ['==', '!=', '>', '>=', '<', '<='] as const;

const aiTalk = z.looseObject({
  ai_id: idOrTemplate.optional(),
  assistance_type: z.enum(['', 'ai', 'team']).optional(),
  assistance_id: idOrTemplate.optional(),
  duration: int.optional(),
});
const transcribe = z.looseObject({
  language: str.optional(),
  on_end_flow_id: idOrTemplate.optional(),
  provider: str.optional(),
  direction: str.optional(),
});

export const ACTION_OPTION_SCHEMAS: Readonly<Record<ActionType, z.ZodType>> = {
  ai_summary: z.looseObject({
    on_end_flow_id: idOrTemplate.optional(),
    reference_type: z.enum(['', 'call', 'conference', 'transcribe', 'recording']).optional(),
    reference_id: idOrTemplate.optional(),
    language: str.optional(),
  }),
  ai_talk: aiTalk,
  ai_task: aiTalk,
  amd: z.looseObject({ machine_handle: str.optional(), async: bool.optional() }),
  answer: none,
  beep: none,
  block: none,
  branch: z.looseObject({
    variable: str.optional(),
    default_target_id: idOrTemplate.optional(),
    target_ids: z.record(z.string(), idOrTemplate).optional(),
  }),
  call: z.looseObject({
    source: Address.optional(),
    destinations: z.array(Address).optional(),
    flow_id: idOrTemplate.optional(),
    actions: z.array(z.looseObject({ type: str })).optional(),
    chained: bool.optional(),
    early_execution: bool.optional(),
    anonymous: z.enum(['', 'yes', 'no', 'auto']).optional(),
  }),
  case_create: z.looseObject({ name: str.optional(), detail: str.optional(), note: str.optional(), sync: bool.optional() }),
  condition_call_digits: z.looseObject({ length: int.optional(), key: str.optional(), false_target_id: idOrTemplate.optional() }),
  condition_call_status: z.looseObject({ status: str.optional(), false_target_id: idOrTemplate.optional() }),
  condition_datetime: z.looseObject({
    condition: z.enum(CONDITIONS).optional(),
    minute: int.optional(),
    hour: int.optional(),
    day: int.optional(),
    month: int.optional(),
    weekdays: z.array(int.min(0).max(6)).optional(),
    false_target_id: idOrTemplate.optional(),
  }),
  condition_variable: z.looseObject({
    condition: z.enum(CONDITIONS).optional(),
    variable: str.optional(),
    value_type: z.enum(['string', 'number', 'length']).optional(),
    value_string: str.optional(),
    value_number: z.number().optional(),
    value_length: int.optional(),
    false_target_id: idOrTemplate.optional(),
  }),
  confbridge_join: z.looseObject({ confbridge_id: idOrTemplate.optional() }),
  conference_join: z.looseObject({ conference_id: idOrTemplate.optional() }),
  connect: z.looseObject({
    source: Address.optional(),
    destinations: z.array(Address).optional(),
    early_media: bool.optional(),
    relay_reason: bool.optional(),
    anonymous: z.enum(['', 'yes', 'no', 'auto']).optional(),
  }),
  conversation_send: z.looseObject({ conversation_id: idOrTemplate.optional(), text: str.optional(), sync: bool.optional() }),
  digits_receive: z.looseObject({ duration: int.optional(), key: str.optional(), length: int.optional() }),
  digits_send: z.looseObject({ digits: str.optional(), duration: int.optional(), interval: int.optional() }),
  echo: z.looseObject({ duration: int.optional() }),
  email_send: z.looseObject({
    destinations: z.array(Address).optional(),
    subject: str.optional(),
    content: str.optional(),
    attachments: z.array(z.looseObject({ reference_type: str.optional(), reference_id: str.optional() })).optional(),
  }),
  empty: none,
  external_media_start: z.looseObject({
    external_host: str.optional(),
    encapsulation: str.optional(),
    transport: str.optional(),
    transport_data: str.optional(),
    connection_type: str.optional(),
    format: str.optional(),
    direction_listen: str.optional(),
    direction_speak: str.optional(),
    data: str.optional(),
  }),
  external_media_stop: none,
  fetch: z.looseObject({ event_url: str.optional(), event_method: str.optional() }),
  fetch_flow: z.looseObject({ flow_id: idOrTemplate.optional() }),
  goto: z.looseObject({ target_id: idOrTemplate.optional(), loop_count: int.optional() }),
  hangup: z.looseObject({ reason: str.optional(), reference_id: idOrTemplate.optional() }),
  message_send: z.looseObject({ source: Address.optional(), destinations: z.array(Address).optional(), text: str.optional() }),
  mute: none,
  play: z.looseObject({ stream_urls: z.array(str).optional() }),
  queue_join: z.looseObject({ queue_id: idOrTemplate.optional() }),
  recording_start: z.looseObject({
    format: str.optional(),
    end_of_silence: int.optional(),
    end_of_key: str.optional(),
    duration: int.optional(),
    beep_start: bool.optional(),
    on_end_flow_id: idOrTemplate.optional(),
  }),
  recording_stop: none,
  sleep: z.looseObject({ duration: int.optional() }),
  stop: none,
  stream_echo: z.looseObject({ duration: int.optional() }),
  talk: z.looseObject({
    text: str.optional(),
    language: str.optional(),
    provider: str.optional(),
    voice_id: str.optional(),
    gender: str.optional(),
    digits_handle: z.enum(['', 'next']).optional(),
    async: bool.optional(),
  }),
  transcribe_recording: transcribe,
  transcribe_start: transcribe,
  transcribe_stop: none,
  variable_set: z.looseObject({ key: str.optional(), value: str.optional() }),
  webhook_send: z.looseObject({
    sync: bool.optional(),
    uri: str.optional(),
    method: str.optional(),
    data_type: str.optional(),
    data: str.optional(),
  }),
};
