// Public library API of smtp365. Each area adds its exports here.
export * from './errors/index.ts';
export * from './config/index.ts';
export * from './auth/index.ts';
export * from './send/index.ts';
export {
  runDoctor,
  CHECKS,
  formatResult,
  formatSummary,
  summarize,
  type DoctorReport,
  type DoctorOptions,
  type DoctorDeps,
  type DoctorProgress,
  type DoctorTokenProvider,
  type CheckResult,
  type CheckStatus,
  type CheckId,
} from './doctor/index.ts';
export { runSetup, upsertAccount, writeConfigTemplate, renderConfigTemplate, GRAPH_CLI_CLIENT_ID, ADMIN_GRAPH_SCOPES, type SetupOptions, type SetupResult, type SetupStep, type AccountFields } from './setup/index.ts';
export * from './relay/index.ts';
