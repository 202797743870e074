import * as http from 'node:http';
import * as https from 'node:https';

import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';

import { GROUP, PLURAL, VERSION, type StepRun } from './api.js';
import type { SecretBody } from './mapping.js';

// The only module that talks to the API server. Everything else gets plain objects from it.

export class KubeError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason?: string,
    readonly causes: { field?: string; message?: string }[] = [],
  ) {
    super(message);
    this.name = 'KubeError';
  }
}

interface StatusBody {
  message?: string;
  reason?: string;
  details?: { causes?: { field?: string; message?: string }[] };
}

function parseStatus(body: unknown): StatusBody {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as StatusBody;
    } catch {
      return { message: body };
    }
  }
  return (body ?? {}) as StatusBody;
}

/** Any failure of a request as a KubeError (status 0: the server could not be reached). */
export function asKubeError(err: unknown): KubeError {
  if (err instanceof KubeError) return err;
  if (err instanceof ApiException) {
    const status = parseStatus(err.body);
    return new KubeError(err.code, status.message ?? err.message, status.reason, status.details?.causes ?? []);
  }
  const code = (err as { statusCode?: unknown })?.statusCode;
  const message = err instanceof Error ? err.message : String(err);
  return new KubeError(typeof code === 'number' ? code : 0, message);
}

/** Worth retrying: the server could not be reached, was overloaded or failed transiently. */
export function isTransient(err: KubeError): boolean {
  return err.status === 0 || err.status === 429 || (err.status >= 500 && err.status !== 501);
}

export interface WatchEvent {
  type: string;
  object: Record<string, unknown>;
}

export interface WatchHandle {
  /** Resolves when the server ends the watch; rejects when the connection fails. */
  done: Promise<void>;
  stop(): void;
}

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class Kube {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;

  constructor(readonly config: KubeConfig) {
    this.custom = config.makeApiClient(CustomObjectsApi);
    this.core = config.makeApiClient(CoreV1Api);
    this.watcher = new Watch(config);
  }

  /** The kubeconfig context's namespace, if it names one. */
  contextNamespace(): string | undefined {
    const context = this.config.getContextObject(this.config.getCurrentContext());
    return context?.namespace || undefined;
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      throw asKubeError(err);
    }
  }

  createStepRun(body: StepRun): Promise<StepRun> {
    const namespace = body.metadata.namespace ?? 'default';
    return this.call(() =>
      this.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, body }),
    ) as Promise<StepRun>;
  }

  getStepRun(namespace: string, name: string): Promise<StepRun> {
    return this.call(() =>
      this.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name }),
    ) as Promise<StepRun>;
  }

  async listStepRun(namespace: string, name: string): Promise<{ items: StepRun[]; resourceVersion: string }> {
    const list = (await this.call(() =>
      this.custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace,
        fieldSelector: `metadata.name=${name}`,
      }),
    )) as { items?: StepRun[]; metadata?: { resourceVersion?: string } };
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** The StepRuns carrying a label (e.g. every execution of one step). */
  async listStepRunsLabelled(namespace: string, labelSelector: string): Promise<StepRun[]> {
    const list = (await this.call(() =>
      this.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, labelSelector }),
    )) as { items?: StepRun[] };
    return list.items ?? [];
  }

  cancelStepRun(namespace: string, name: string): Promise<StepRun> {
    return this.call(() =>
      this.custom.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, plural: PLURAL, namespace, name, body: { spec: { cancel: true } } },
        MERGE_PATCH,
      ),
    ) as Promise<StepRun>;
  }

  /** Watches the one StepRun `name` from `resourceVersion`; the server ends it after `timeoutSeconds`. */
  async watchStepRun(
    namespace: string,
    name: string,
    resourceVersion: string,
    timeoutSeconds: number,
    onEvent: (event: WatchEvent) => void,
  ): Promise<WatchHandle> {
    let settle: (err?: unknown) => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(asKubeError(err)) : resolve());
    });
    const controller = await this.watcher.watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`,
      {
        fieldSelector: `metadata.name=${name}`,
        resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds,
      },
      (type, object) => onEvent({ type, object: (object ?? {}) as Record<string, unknown> }),
      (err) => settle(err),
    );
    return { done, stop: () => controller.abort() };
  }

  createSecret(body: SecretBody): Promise<V1Secret> {
    return this.call(() => this.core.createNamespacedSecret({ namespace: body.metadata.namespace, body }));
  }

  readSecret(namespace: string, name: string): Promise<V1Secret> {
    return this.call(() => this.core.readNamespacedSecret({ namespace, name }));
  }

  /** Replaces the Secret's data, keeping its identity (and any owner reference it has). */
  replaceSecret(existing: V1Secret, body: SecretBody): Promise<V1Secret> {
    const replacement: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { ...existing.metadata, labels: body.metadata.labels },
      type: 'Opaque',
      stringData: body.stringData,
    };
    delete replacement.data;
    return this.call(() =>
      this.core.replaceNamespacedSecret({ namespace: body.metadata.namespace, name: body.metadata.name, body: replacement }),
    );
  }

  async deleteSecret(namespace: string, name: string): Promise<void> {
    await this.call(() => this.core.deleteNamespacedSecret({ namespace, name }));
  }

  setSecretOwners(namespace: string, name: string, owners: NonNullable<V1Secret['metadata']>['ownerReferences']): Promise<V1Secret> {
    return this.call(() =>
      this.core.patchNamespacedSecret(
        { namespace, name, body: { metadata: { ownerReferences: owners } } },
        MERGE_PATCH,
      ),
    );
  }

  /**
   * Opens a Pod's log. The client library's Log helper has no `stream` parameter (split
   * stdout/stderr, PodLogsQuerySplitStreams), so the request is made here with the
   * kubeconfig's own TLS and credentials.
   */
  async openLog(
    namespace: string,
    pod: string,
    query: Record<string, string>,
  ): Promise<{ status: number; body: http.IncomingMessage; abort: () => void }> {
    const cluster = this.config.getCurrentCluster();
    if (!cluster) throw new KubeError(0, 'the kubeconfig has no current cluster');
    const url = new URL(`${cluster.server.replace(/\/+$/, '')}/api/v1/namespaces/${namespace}/pods/${pod}/log`);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    const options: https.RequestOptions = { method: 'GET' };
    await this.config.applyToHTTPSOptions(options);
    const transport = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const request = transport.request(url, options, (response) =>
        resolve({ status: response.statusCode ?? 0, body: response, abort: () => request.destroy() }),
      );
      request.on('error', (err) => reject(new KubeError(0, `reading logs of pod ${pod}: ${err.message}`)));
      request.end();
    });
  }
}

/** Reads a whole (small) response body, e.g. an error Status. */
export async function readBody(body: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function statusMessage(text: string): string {
  return parseStatus(text).message ?? text;
}

export { KubeConfig };
