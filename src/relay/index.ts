// The relay, for embedding: listener → queue → delivery.
export { startRelay, RelayDaemon, type RelayOptions, type RelayStatus, type AccountSetup, type AccountStatusLine } from './daemon.ts';
export { loadRelayConfig, parseRelayConfig, applyOverrides, relayConfigSchema, type RelayConfig, type RelayConfigInput, type RelayOverrides, type ListenerConfig, type SenderPolicy } from './config.ts';
export { Queue, newQueueId, isQueueId, type AcceptMeta, type OperatorResult, type ControlAction } from './queue/queue.ts';
export { QUEUE_STATES, type QueueState, type QueueEntry, type ListedEntry, type RecipientState, type RecipientStatus, type QueueError, type ClientInfo } from './queue/types.ts';
export { addUser, removeUser, loadUsersFile, hashPassword, verifyPassword, type RelayUser } from './users.ts';
export { createLogger, type Logger } from './log.ts';
export type { AccountAlert } from './delivery/delivery.ts';
