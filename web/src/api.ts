// The service API as the viewer uses it: bearer-token fetches typed by the served OpenAPI schema.
// The types come from src/generated/openapi.ts, which `make web` writes from the schema of
// `create_app`; a route or field that changes on the server fails this build (tsc).
import type { components, paths } from "./generated/openapi";

type Schemas = components["schemas"];
export type Study = Schemas["StudyPublic"];
export type Series = Schemas["SeriesPublic"];
export type Job = Schemas["JobPublic"];
export type Structure = Schemas["LabelPublic"];
export type Principal = Schemas["PrincipalPublic"];

/** The JSON body of a GET route's 200 answer, as the schema publishes it. */
type GetJson<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { "application/json": infer T } } } };
}
  ? T
  : never;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class Api {
  constructor(readonly token: string) {}

  get headers(): Record<string, string> {
    return { Authorization: `Bearer ${this.token}` };
  }

  async json<T>(path: string): Promise<T> {
    const response = await fetch(path, { headers: this.headers });
    if (!response.ok) throw await apiError(response);
    return (await response.json()) as T;
  }

  async bytes(path: string): Promise<ArrayBuffer> {
    const response = await fetch(path, { headers: this.headers });
    if (!response.ok) throw await apiError(response);
    return await response.arrayBuffer();
  }

  whoami(): Promise<GetJson<"/api/users/me">> {
    return this.json("/api/users/me");
  }

  studies(): Promise<GetJson<"/api/studies">> {
    return this.json("/api/studies?limit=200");
  }

  jobs(studyId?: string): Promise<GetJson<"/api/jobs">> {
    const query = studyId ? `?study_id=${encodeURIComponent(studyId)}&limit=50` : "?limit=500";
    return this.json(`/api/jobs${query}`);
  }

  labels(jobId: string): Promise<GetJson<"/api/viewer/jobs/{job_id}/labels">> {
    return this.json(`/api/viewer/jobs/${encodeURIComponent(jobId)}/labels`);
  }

  imageUrl(studyId: string, seriesUid: string | null): string {
    const query = seriesUid ? `?series_uid=${encodeURIComponent(seriesUid)}` : "";
    return `/api/viewer/studies/${encodeURIComponent(studyId)}/image.nii.gz${query}`;
  }

  resultUrl(jobId: string, name: Schemas["ResultName"]): string {
    return `/api/jobs/${encodeURIComponent(jobId)}/results/${name}`;
  }
}

async function apiError(response: Response): Promise<ApiError> {
  let detail = response.statusText;
  try {
    detail = ((await response.json()) as { detail?: unknown }).detail?.toString() ?? detail;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, `${response.status}: ${detail}`);
}
