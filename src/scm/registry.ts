import { readFileSync } from "node:fs";
import type { Settings } from "../config/settings.js";
import { AppError } from "../errors.js";
import { GitHubProvider } from "./github.js";
import type { ScmProvider } from "./provider.js";
import type { WebhookProvider } from "./webhook-deliveries.js";

/** What every provider is built from: the operator's OAuth app and where the host is. */
export interface ProviderSettings {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  baseUrl?: string;
  ca?: string;
}

interface Kind {
  label: string;
  make(options: ProviderSettings): ScmProvider;
}

const kinds: Record<WebhookProvider, Kind | undefined> = {
  github: { label: "GitHub", make: (o) => new GitHubProvider(o) },
  gitlab: undefined,
  bitbucket: undefined,
  gitea: undefined,
};

export interface ConfiguredProvider {
  name: WebhookProvider;
  label: string;
  scopes: readonly string[];
}

/** The git hosts the operator set up an OAuth app for, each built on first use. */
export class ScmRegistry {
  private readonly made = new Map<string, ScmProvider>();

  constructor(
    private readonly settings: Settings,
    /** Where the OAuth callback is, known once the server listens. */
    private readonly publicUrl: () => string,
  ) {}

  label(name: WebhookProvider): string {
    return kinds[name]?.label ?? name;
  }

  configured(): ConfiguredProvider[] {
    return (Object.keys(kinds) as WebhookProvider[]).filter((n) => this.isSetUp(n)).map((name) => ({ name, label: this.label(name), scopes: this.get(name).scopes }));
  }

  get(name: WebhookProvider): ScmProvider {
    const kind = kinds[name];
    const s = this.settings;
    const [clientId, clientSecret, baseUrl, caFile] = [s[`${name}ClientId`], s[`${name}ClientSecret`], s[`${name}Url`], s[`${name}CaFile`]];
    if (!kind || !clientId || !clientSecret) throw new AppError(404, "provider_not_configured", `${this.label(name)} is not set up on this server: the operator sets SLIPWAY_${name.toUpperCase()}_CLIENT_ID and _CLIENT_SECRET (see the README)`);
    // The callback's address is part of the OAuth app, and it is known only once the server listens.
    const redirectUri = `${this.publicUrl()}/api/v1/scm/${name}/callback`;
    const key = `${name}\n${redirectUri}`;
    let provider = this.made.get(key);
    if (!provider) {
      const options = { clientId, clientSecret, redirectUri, ...(baseUrl ? { baseUrl } : {}), ...(caFile ? { ca: readFileSync(caFile, "utf8") } : {}) };
      this.made.set(key, (provider = kind.make(options)));
    }
    return provider;
  }

  private isSetUp(name: WebhookProvider): boolean {
    return Boolean(kinds[name] && this.settings[`${name}ClientId`] && this.settings[`${name}ClientSecret`]);
  }
}
