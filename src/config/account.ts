// What an account is. The auth module loads and validates accounts (config
// file, environment, flags); everything else only consumes this shape.

export type Cloud = 'global' | 'usgov' | 'china' | 'custom';

/** How the account gets tokens. */
export type Flow = 'device-code' | 'browser' | 'client-secret' | 'client-certificate' | 'password';

export interface Account {
  /** Name in the config file; "default" for the environment-only account. */
  name: string;
  cloud: Cloud;
  /** Authority host base without tenant, e.g. https://login.microsoftonline.com */
  authorityHost: string;
  /** Directory (tenant) id or domain. */
  tenant: string;
  /** Application (client) id. */
  clientId: string;
  /** The mailbox to send as (XOAUTH2 `user=`). For delegated flows, the signed-in user unless it is a shared mailbox. */
  user: string;
  flow: Flow;
  /** Confidential client: secret, or certificate (PEM paths) for client-certificate. */
  clientSecret?: string;
  certificatePath?: string;
  privateKeyPath?: string;
  /** PEM certificate given inline (SMTP365_CERTIFICATE) or read from certificatePath; may hold the key too. */
  certificate?: string;
  /** PEM private key given inline (SMTP365_PRIVATE_KEY); else read from privateKeyPath or the certificate file. */
  privateKey?: string;
  /** ROPC user name (defaults to `user`) and password (deprecated flow). */
  username?: string;
  password?: string;
  smtpHost: string;
  smtpPort: number;
  /** Extra CA certificates (PEM) to trust for the identity endpoints and SMTP: the sandbox's CA. */
  caFile?: string;
  /** The SMTP token resource, e.g. https://outlook.office.com */
  smtpResource: string;
  /** Microsoft Graph base URL for doctor/setup, e.g. https://graph.microsoft.com */
  graphEndpoint: string;
}

export const CLOUDS: Record<Exclude<Cloud, 'custom'>, { authorityHost: string; smtpHost: string; smtpResource: string; graphEndpoint: string }> = {
  global: {
    authorityHost: 'https://login.microsoftonline.com',
    smtpHost: 'smtp.office365.com',
    smtpResource: 'https://outlook.office.com',
    graphEndpoint: 'https://graph.microsoft.com',
  },
  // UNCONFIRMED resource URIs (reference §1): configurable per account.
  usgov: {
    authorityHost: 'https://login.microsoftonline.us',
    smtpHost: 'smtp.office365.us',
    smtpResource: 'https://outlook.office365.us',
    graphEndpoint: 'https://graph.microsoft.us',
  },
  china: {
    authorityHost: 'https://login.chinacloudapi.cn',
    smtpHost: 'smtp.partner.outlook.cn',
    smtpResource: 'https://partner.outlook.cn',
    graphEndpoint: 'https://microsoftgraph.chinacloudapi.cn',
  },
};

export function isAppOnly(account: Pick<Account, 'flow'>): boolean {
  return account.flow === 'client-secret' || account.flow === 'client-certificate';
}

/** Scopes to request for SMTP: delegated SMTP.Send + offline_access, or app-only .default. */
export function smtpScopes(account: Pick<Account, 'flow' | 'smtpResource'>): string[] {
  if (isAppOnly(account)) {
    // App-only tokens use the .default of the Exchange resource (outlook.office365.com in the global cloud).
    const resource = account.smtpResource.replace('://outlook.office.com', '://outlook.office365.com');
    return [`${resource}/.default`];
  }
  return [`${account.smtpResource}/SMTP.Send`, 'offline_access'];
}
