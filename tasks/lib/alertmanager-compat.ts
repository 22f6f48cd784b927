// The rendered Alertmanager configuration, made runnable by an Alertmanager on this machine: its
// secrets are files under /etc/alertmanager/secrets/ in the cluster, so each `*_file` field is
// pointed at a local file instead, or, where the local Alertmanager is older than the field, turned
// into the inline field of the same meaning (`url_file` -> `url`). Everything else (routes,
// receivers, timings, inhibitions) stays as rendered. Used by the render validation (amtool
// check-config, placeholder values) and by the tests (the real Alertmanager, test values).
import { SECRET_MOUNT } from './alerting.ts';

type Version = [number, number];

/** The Alertmanager release that first reads each file field (config/notifiers.go at each tag of
 *  prometheus/alertmanager), and the inline field an older one takes instead. */
export const FILE_FIELDS: Record<string, { inline: string; since: Version }> = {
  url_file: { inline: 'url', since: [0, 26] },
  webhook_url_file: { inline: 'webhook_url', since: [0, 27] },
  user_key_file: { inline: 'user_key', since: [0, 26] },
  token_file: { inline: 'token', since: [0, 26] },
  api_url_file: { inline: 'api_url', since: [0, 22] },
  auth_password_file: { inline: 'auth_password', since: [0, 25] },
};

/** `amtool, version 0.25.0 (branch: ...)` or `alertmanager, version 0.25.0 ...` -> [0, 25]. */
export function parseVersion(text: string): Version | null {
  const m = /version (\d+)\.(\d+)\.\d+/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function atLeast(v: Version, since: Version): boolean {
  return v[0] > since[0] || (v[0] === since[0] && v[1] >= since[1]);
}

export interface LocalSecret {
  /** The secret's value, for a field the local Alertmanager only takes inline. */
  value: string;
  /** A local file holding the value, for a field it reads from a file. */
  file: string;
}

type Dict = Record<string, unknown>;

/**
 * A copy of `config` for an Alertmanager of `version`, with every secret file of the cluster
 * (`SECRET_MOUNT/<key>`) replaced by what `local(key)` gives. Throws on a file field this module
 * does not know, so a new one cannot slip through unchecked.
 */
export function localConfig(config: Dict, version: Version, local: (key: string) => LocalSecret): Dict {
  const copy = structuredClone(config);
  for (const receiver of (copy.receivers as Dict[] | undefined) ?? []) {
    for (const [integration, list] of Object.entries(receiver)) {
      if (!integration.endsWith('_configs') || !Array.isArray(list)) continue;
      for (const c of list as Dict[]) {
        for (const [field, value] of Object.entries(c)) {
          if (!field.endsWith('_file') || typeof value !== 'string' || !value.startsWith(`${SECRET_MOUNT}/`)) continue;
          const known = FILE_FIELDS[field];
          if (!known) throw new Error(`${integration}.${field}: a secret file field this check does not know`);
          const secret = local(value.slice(SECRET_MOUNT.length + 1));
          if (atLeast(version, known.since)) c[field] = secret.file;
          else {
            delete c[field];
            c[known.inline] = secret.value;
          }
        }
      }
    }
  }
  return copy;
}

/** The Alertmanager configuration of a rendered kube-prometheus-stack HelmRelease, if it has one. */
export function configOfRelease(release: unknown): Dict | null {
  const o = release as { kind?: unknown; spec?: { values?: { alertmanager?: { config?: unknown } } } } | null;
  if (!o || o.kind !== 'HelmRelease') return null;
  const config = o.spec?.values?.alertmanager?.config;
  return config && typeof config === 'object' && !Array.isArray(config) ? (config as Dict) : null;
}
