"""What a user sees of a job: a retry after a worker died, and who may cancel (#12)."""

from __future__ import annotations

from medverse.service.jobs.store import claim_next, create_job, requeue_expired
from tests.service.conftest import Api, add_token, insert_study


def test_a_job_whose_worker_died_shows_it_is_being_retried(api: Api) -> None:
    study = insert_study(api.db)
    job = create_job(api.db, study_id=study, series_uid=None, model="m", created_by="admin-1")
    assert claim_next(api.db, "worker-that-dies", lease_seconds=-1.0) is not None

    lost = api.client.get(f"/api/jobs/{job.id}", headers=api.admin).json()
    requeue_expired(api.db, max_attempts=3)
    again = api.client.get(f"/api/jobs/{job.id}", headers=api.admin).json()

    assert (lost["state"], lost["worker_lost"], lost["attempts"]) == ("running", True, 1)
    assert (again["state"], again["retrying"], again["worker_lost"]) == ("queued", True, False)


def test_cancel_by_someone_else_says_who_may(api: Api) -> None:
    study = insert_study(api.db)
    job = create_job(api.db, study_id=study, series_uid=None, model="m", created_by="clinician-1")
    other = add_token(api.db, api.settings, "clinician-2", "clinician")

    refused = api.client.post(f"/api/jobs/{job.id}/cancel", headers=other)

    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"job {job.id} was queued by clinician-1: only they or an admin may cancel it"
    )


def test_head_on_the_study_list_answers_like_get_without_a_body(api: Api) -> None:
    get = api.client.get("/api/studies", headers=api.clinician)
    head = api.client.head("/api/studies", headers=api.clinician)

    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
