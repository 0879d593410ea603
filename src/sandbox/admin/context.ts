// What the admin API and Graph reach: the sandbox's shared parts.
import type { FaultInjector } from '../faults/injector.ts';
import type { IdentityService } from '../identity/service.ts';
import type { MessageStore } from '../mail/store.ts';
import type { SandboxClock } from '../state/clock.ts';
import type { Directory } from '../state/directory.ts';
import type { SandboxInfo } from '../state/model.ts';
import type { TokenIssuer } from '../tokens/issuer.ts';

export interface AdminContext {
  directory: Directory;
  clock: SandboxClock;
  issuer: TokenIssuer;
  identity: IdentityService;
  faults: FaultInjector;
  messages: MessageStore;
  stateDir: string;
  info: () => SandboxInfo;
  /** Puts the directory back as the sandbox started (scenario or default tenant). */
  resetDirectory: () => void;
  /** Puts /admin/settings back as the sandbox started. */
  resetSettings: () => void;
}
