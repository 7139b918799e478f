import { readFileSync } from "node:fs";
import { SettingsError, type Settings } from "../config/settings.js";
import { AppError } from "../errors.js";
import { BitbucketProvider } from "./bitbucket.js";
import { GiteaProvider } from "./gitea.js";
import { GitHubProvider } from "./github.js";
import { GitLabProvider } from "./gitlab.js";
import type { ScmProvider } from "./provider.js";
import type { WebhookProvider } from "./webhook-deliveries.js";

/** What every provider is built from: the operator's OAuth app and where the host is. */
export interface ProviderSettings {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  baseUrl?: string;
  apiUrl?: string;
  ca?: string;
}

interface Kind {
  label: string;
  make(options: ProviderSettings): ScmProvider;
}

const kinds: Record<WebhookProvider, Kind> = {
  github: { label: "GitHub", make: (o) => new GitHubProvider(o) },
  gitlab: { label: "GitLab", make: (o) => new GitLabProvider(o) },
  bitbucket: { label: "Bitbucket", make: (o) => new BitbucketProvider(o) },
  // Settings refuse a Gitea app without its address, so baseUrl is there.
  gitea: { label: "Gitea", make: (o) => new GiteaProvider({ ...o, baseUrl: o.baseUrl! }) },
};

export interface ConfiguredProvider {
  name: WebhookProvider;
  label: string;
  scopes: readonly string[];
}

/** The git hosts the operator set up an OAuth app for, each built on first use. */
export class ScmRegistry {
  private readonly made = new Map<string, ScmProvider>();
  /** CA certificates read at start, so a wrong path stops the server instead of failing a sign-in later. */
  private readonly cas = new Map<WebhookProvider, string>();

  constructor(
    private readonly settings: Settings,
    /** Where the OAuth callback is, known once the server listens. */
    private readonly publicUrl: () => string,
  ) {
    for (const name of Object.keys(kinds) as WebhookProvider[]) {
      const file = settings[`${name}CaFile`];
      if (!file) continue;
      try {
        this.cas.set(name, readFileSync(file, "utf8"));
      } catch (err) {
        throw new SettingsError(`cannot read the CA certificate of ${kinds[name].label} (SLIPWAY_${name.toUpperCase()}_CA_FILE) at ${file}: ${(err as Error).message}`);
      }
    }
  }

  label(name: WebhookProvider): string {
    return kinds[name].label;
  }

  configured(): ConfiguredProvider[] {
    return (Object.keys(kinds) as WebhookProvider[]).filter((n) => this.isSetUp(n)).map((name) => ({ name, label: this.label(name), scopes: this.get(name).scopes }));
  }

  get(name: WebhookProvider): ScmProvider {
    const kind = kinds[name];
    const s = this.settings;
    const [clientId, clientSecret, baseUrl, ca] = [s[`${name}ClientId`], s[`${name}ClientSecret`], s[`${name}Url`], this.cas.get(name)];
    if (!clientId || !clientSecret) throw new AppError(404, "provider_not_configured", `${this.label(name)} is not set up on this server: the operator sets SLIPWAY_${name.toUpperCase()}_CLIENT_ID and _CLIENT_SECRET (see the README)`);
    // The callback's address is part of the OAuth app, and it is known only once the server listens.
    const redirectUri = `${this.publicUrl()}/api/v1/scm/${name}/callback`;
    const key = `${name}\n${redirectUri}`;
    let provider = this.made.get(key);
    if (!provider) {
      const apiUrl = name === "bitbucket" ? s.bitbucketApiUrl : undefined;
      const options = { clientId, clientSecret, redirectUri, ...(baseUrl ? { baseUrl } : {}), ...(apiUrl ? { apiUrl } : {}), ...(ca ? { ca } : {}) };
      this.made.set(key, (provider = kind.make(options)));
    }
    return provider;
  }

  private isSetUp(name: WebhookProvider): boolean {
    return Boolean(this.settings[`${name}ClientId`] && this.settings[`${name}ClientSecret`]);
  }
}
