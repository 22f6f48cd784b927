// The shape of a validated inventory. The JSON Schema in inventory-schema.ts is the source of the
// rules; this is the TypeScript view of what survives validation (defaults filled in).

/** A secret reference as written in the inventory: `env:NAME` or `file:PATH`. Never a value. */
export type SecretRef = `env:${string}` | `file:${string}`;

export type Role = 'control-plane' | 'worker';

export interface HostSpec {
  name: string;
  address: string;
  user: string;
  port: number;
  identityFile?: string;
  roles: Role[];
}

export type Addon = { name: string; args?: string };

export type AlertSeverity = 'warning' | 'critical';

interface DestinationBase {
  /** Unique among the destinations: the kind, numbered from the second of a kind, unless named. */
  name: string;
  minSeverity: AlertSeverity;
}

export type AlertDestination = DestinationBase &
  (
    | { kind: 'webhook'; url: SecretRef }
    | { kind: 'ntfy'; url: SecretRef }
    | { kind: 'discord'; webhookUrl: SecretRef }
    | { kind: 'slack'; webhookUrl: SecretRef; channel?: string }
    | { kind: 'pushover'; userKey: SecretRef; token: SecretRef }
    | { kind: 'email'; to: string; from: string; smarthost: string; username?: string; password?: SecretRef }
  );

export type AlertDestinationKind = AlertDestination['kind'];

export interface Alerts {
  destinations: AlertDestination[];
  heartbeat?: { url: SecretRef; interval: string };
}

/** Who may enter a hostname through Cloudflare Access: anyone matching one of the lists. */
export interface AccessPolicy {
  emails: string[];
  emailDomains: string[];
  /** Identity provider ids: anyone who signs in through one of them. */
  identityProviders: string[];
  githubOrganizations: { name: string; team?: string; identityProvider: string }[];
  /** Go duration, as the Access API takes it (`24h`). */
  sessionDuration: string;
}

export interface TunnelRoute {
  hostname: string;
  service: string;
  /** Anyone on the internet may open it: no Access application in front. */
  public?: boolean;
  /** This route's policy, instead of tunnel.access. */
  access?: AccessPolicy;
  /** Service token names let in besides the policy's people. */
  serviceTokens?: string[];
  /** The user's own app this route reaches; `service` is filled in from it. */
  app?: string;
}

/** One of the user's own applications (apps.own). */
export interface OwnApp {
  name: string;
  /** The homelab writes its Deployment and Service; without it, apps/base/<name>/ is the user's. */
  image?: string;
  port?: number;
  args: string[];
  env: Record<string, string | number>;
  user?: number;
  healthPath: string;
  kubeApi: boolean;
  egress: { cidr?: string; app?: string; port: number; protocol: 'TCP' | 'UDP' }[];
  homepage: { group: string; name?: string; description?: string; icon?: string; hidden: boolean };
}

export interface Inventory {
  /** Absolute path of the inventory file (for messages and for resolving file: secrets and .env). */
  file: string;
  cluster: { name: string; domain: string };
  ssh: { knownHosts: 'strict' | 'accept-new' | 'off'; connectTimeout: number };
  hosts: HostSpec[];
  host: {
    packages: string[];
    sysctl: Record<string, string | number>;
    swap: 'off' | 'on';
    firewall: { allowSsh: string[]; allowApi: string[] };
  };
  microk8s: {
    channel: string;
    addons: Addon[];
    holdRefresh: boolean;
    pruneAddons: boolean;
    upgrade: { workers: number; drainTimeout: number };
    removal: { force: string[]; acceptHaLoss: boolean };
    mesh?: 'linkerd';
  };
  backups: { keep: number };
  /**
   * Hosts an earlier run knew that the inventory no longer lists (remembered beside it, in
   * .tasks/hosts.json), with how to reach them: join-nodes takes them out of the cluster. Set by
   * the CLI, never read from the file.
   */
  departed?: HostSpec[];
  flux: {
    version: string;
    interval: string;
    github: { owner: string; repository: string; branch: string; private: boolean; token: SecretRef };
  };
  tunnel: {
    name: string;
    accountId: string;
    apiToken: SecretRef;
    /** `service` is filled in from the app for a route that names one (`http://NAME.NAME:PORT`). */
    routes: TunnelRoute[];
    /** The policy of every route without its own that is not public. */
    access?: AccessPolicy;
  };
  monitoring: { retention: string; storage: string; grafana: { adminPassword: SecretRef }; alerts: Alerts };
  apps: {
    own: OwnApp[];
    homepage: {
      title: string;
      services: { group: string; items: { name: string; href: string; description?: string; icon?: string }[] }[];
    };
  };
  drift: { report: 'github' | 'none'; schedule: string };
}
