// The service API as the viewer uses it: bearer-token fetches and the shapes it reads.

export type Study = {
  id: string;
  kind: string;
  identified: boolean;
  created_at: string;
  series: { series_uid: string; modality: string; description: string; is_image: boolean }[];
};

export type Job = {
  id: string;
  study_id: string;
  series_uid: string | null;
  model: string;
  state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: number;
  error: string | null;
  results: string[];
};

export type Structure = {
  value: number;
  name: string;
  color: [number, number, number];
  volume_ml: number;
  centroid_mm: [number, number, number];
};

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

  whoami(): Promise<{ name: string; role: string }> {
    return this.json("/api/users/me");
  }

  studies(): Promise<Study[]> {
    return this.json("/api/studies?limit=200");
  }

  jobs(studyId?: string): Promise<Job[]> {
    const query = studyId ? `?study_id=${encodeURIComponent(studyId)}&limit=50` : "?limit=500";
    return this.json(`/api/jobs${query}`);
  }

  labels(jobId: string): Promise<{ structures: Structure[] }> {
    return this.json(`/api/viewer/jobs/${jobId}/labels`);
  }

  imageUrl(studyId: string, seriesUid: string | null): string {
    const query = seriesUid ? `?series_uid=${encodeURIComponent(seriesUid)}` : "";
    return `/api/viewer/studies/${studyId}/image.nii.gz${query}`;
  }

  resultUrl(jobId: string, name: string): string {
    return `/api/jobs/${jobId}/results/${name}`;
  }
}

async function apiError(response: Response): Promise<ApiError> {
  let detail = response.statusText;
  try {
    detail = ((await response.json()) as { detail?: string }).detail ?? detail;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, `${response.status}: ${detail}`);
}
