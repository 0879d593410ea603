// Accounts: what they are, where they live, how they are loaded.
export { CLOUDS, isAppOnly, smtpScopes, type Account, type Cloud, type Flow } from './account.ts';
export { loadAccounts, resolveAccount, validateConfigFile, ACCOUNT_ENV_VARS, type LoadOptions, type LoadedAccounts, type ResolveOptions } from './load.ts';
export { stateDir, configDir, configCandidates, expandHome } from './paths.ts';
export { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from './flags.ts';
