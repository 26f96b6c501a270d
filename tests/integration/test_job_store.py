"""One contract for the job store, run on SQLite and on a real PostgreSQL (the `job_store` fixture gives both)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchline.config import Settings
from batchline.domain.jobs import MAX_PARTIAL_FAILURES, Condition, Job, JobKind, JobState, ShardRecord
from batchline.errors import AlreadyExists, FailedPrecondition, NotFound
from batchline.storage import Storage, join
from batchline.store import JobStore
from batchline.store.sql import jobs as jobs_table
from batchline.store.sql import output_dirs as output_dirs_table
from batchline.writers.staged import output_dir_candidates, output_dir_name

LEASE = 30.0  # long enough never to run out by itself in a test
SHORT_LEASE = 0.3


def make_job(
    store: JobStore,
    *,
    state: JobState = JobState.QUEUED,
    kind: JobKind = JobKind.BATCH_PREDICT,
    created: float | None = None,
    project: str = "p",
    location: str = "us-central1",
    **extra: object,
) -> Job:
    now = time.time() if created is None else created
    job = Job(
        id=uuid.uuid4().hex[:20],
        kind=kind,
        project=project,
        location=location,
        model_id="colors",
        state=state,
        create_time=now,
        update_time=now,
        request={
            "inputConfig": {"gcsSource": {"inputUris": ["gs://b/in.csv"]}},
            "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://b/out"}},
            "params": {"score_threshold": "0.2"},
        },
        **extra,
    )
    return store.create(job)


def shard_rows(store: JobStore, job_id: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM job_shards WHERE job_id = :id"), {"id": job_id}).scalar_one()


# ------------------------------------------------------------------------------------------------- records


def test_create_then_get_returns_every_field(job_store: JobStore) -> None:
    job = make_job(
        job_store,
        total=7,
        processed=3,
        failed=1,
        output_dir="gs://b/out/prediction-colors-x",
        partial_failures=[{"code": 3, "message": "gs://b/x.jpg: bad"}],
        error=None,
        result_metadata={"key": "value"},
    )

    got = job_store.get(job.id)

    assert got == job
    assert isinstance(got.kind, JobKind) and isinstance(got.state, JobState)


def test_get_of_unknown_id_raises_not_found(job_store: JobStore) -> None:
    with pytest.raises(NotFound):
        job_store.get("no-such-operation")


def test_update_changes_values_and_update_time(job_store: JobStore) -> None:
    job = make_job(job_store, created=1000.0)

    job_store.update(job.id, output_dir="gs://b/out/x", total=12)

    got = job_store.get(job.id)
    assert (got.output_dir, got.total) == ("gs://b/out/x", 12)
    assert got.update_time > 1000.0


def test_list_is_newest_first_filters_done_and_pages(job_store: JobStore) -> None:
    states = [
        JobState.SUCCEEDED,
        JobState.QUEUED,
        JobState.FAILED,
        JobState.RUNNING,
        JobState.CANCELLED,
        JobState.CANCELLING,
        JobState.QUEUED,
    ]
    made = [make_job(job_store, state=s, created=1000.0 + i) for i, s in enumerate(states)]
    make_job(job_store, project="other", created=2000.0)  # another project ...
    make_job(job_store, location="europe-west1", created=2001.0)  # ... and another location: never listed
    newest_first = [j.id for j in reversed(made)]

    def ids(done: bool | None, offset: int = 0, limit: int = 100) -> list[str]:
        return [j.id for j in job_store.list("p", "us-central1", done, offset, limit)]

    assert ids(None) == newest_first
    assert ids(True) == [j.id for j in reversed(made) if j.state.done]
    assert ids(False) == [j.id for j in reversed(made) if not j.state.done]
    assert set(ids(True)) | set(ids(False)) == set(newest_first)
    pages = [ids(None, offset, 3) for offset in (0, 3, 6, 9)]
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7], []]
    assert ids(False, 1, 2) == [j.id for j in reversed(made) if not j.state.done][1:3]
    assert job_store.list("nobody", "us-central1", None, 0, 10) == []


# ------------------------------------------------------------------------------------------ claims and leases


def test_claim_takes_a_queued_job_once(job_store: JobStore) -> None:
    job = make_job(job_store)

    claimed = job_store.claim("worker-a", LEASE)

    assert claimed is not None and claimed.id == job.id
    assert claimed.state == JobState.RUNNING
    assert job_store.get(job.id).state == JobState.RUNNING
    assert job_store.claim("worker-b", LEASE) is None  # the lease is live
    assert job_store.claim("worker-a", LEASE) is None  # not even its owner takes it twice


def test_claim_takes_the_oldest_batch_job_and_ignores_other_kinds_and_done_jobs(job_store: JobStore) -> None:
    make_job(job_store, kind=JobKind.DEPLOY_MODEL, created=900.0)
    make_job(job_store, state=JobState.SUCCEEDED, created=950.0)
    make_job(job_store, state=JobState.CANCELLED, created=960.0)
    newer = make_job(job_store, created=2000.0)
    older = make_job(job_store, created=1000.0)

    first = job_store.claim("w", LEASE)
    second = job_store.claim("w", LEASE)

    assert (first.id if first else None, second.id if second else None) == (older.id, newer.id)
    assert job_store.claim("w", LEASE) is None


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_locked_out(job_store: JobStore) -> None:
    job = make_job(job_store)
    assert job_store.claim("worker-a", SHORT_LEASE) is not None
    assert job_store.heartbeat(job.id, "worker-a", SHORT_LEASE) == JobState.RUNNING
    assert job_store.commit_shard(job.id, "worker-a", ShardRecord(0, 4, 0), []) is True
    assert job_store.claim("worker-b", SHORT_LEASE) is None

    time.sleep(SHORT_LEASE + 0.2)
    taken = job_store.claim("worker-b", LEASE)

    assert taken is not None and taken.id == job.id and taken.state == JobState.RUNNING
    assert job_store.heartbeat(job.id, "worker-a", LEASE, processed=99) is None
    assert job_store.commit_shard(job.id, "worker-a", ShardRecord(1, 4, 0), []) is False
    assert job_store.finish(job.id, "worker-a", JobState.FAILED, error={"code": 13, "message": "x"}) is False
    got = job_store.get(job.id)
    assert (got.state, got.processed, got.error) == (JobState.RUNNING, 0, None)
    assert job_store.committed_shards(job.id) == [ShardRecord(0, 4, 0)]  # the new owner resumes after shard 0
    # the new owner carries on
    assert job_store.heartbeat(job.id, "worker-b", LEASE, processed=8) == JobState.RUNNING
    assert job_store.commit_shard(job.id, "worker-b", ShardRecord(1, 4, 0), []) is True
    assert job_store.finish(job.id, "worker-b", JobState.SUCCEEDED, processed=8) is True
    assert job_store.get(job.id).state == JobState.SUCCEEDED
    assert job_store.claim("worker-c", LEASE) is None


def test_a_released_lease_is_taken_over_at_once(job_store: JobStore) -> None:
    job = make_job(job_store)
    job_store.claim("worker-a", LEASE)

    job_store.release(job.id, "worker-b")  # not its lease: nothing happens
    assert job_store.claim("worker-b", LEASE) is None
    job_store.release(job.id, "worker-a")  # a clean shutdown
    taken = job_store.claim("worker-b", LEASE)

    assert taken is not None and taken.id == job.id and taken.state == JobState.RUNNING
    assert job_store.heartbeat(job.id, "worker-a", LEASE) is None
    assert job_store.heartbeat(job.id, "worker-b", LEASE) == JobState.RUNNING


def test_a_cancelling_job_whose_worker_died_is_claimed_as_cancelling(job_store: JobStore) -> None:
    job = make_job(job_store)
    job_store.claim("worker-a", SHORT_LEASE)
    job_store.request_cancel(job.id)
    time.sleep(SHORT_LEASE + 0.2)

    taken = job_store.claim("worker-b", LEASE)

    assert taken is not None and taken.state == JobState.CANCELLING
    assert job_store.finish(job.id, "worker-b", JobState.CANCELLED, error={"code": 1, "message": "c"}) is True
    assert job_store.get(job.id).state == JobState.CANCELLED


def test_heartbeat_renews_records_progress_and_reports_cancelling(job_store: JobStore) -> None:
    job = make_job(job_store)
    job_store.claim("w", SHORT_LEASE)

    assert job_store.heartbeat(job.id, "w", LEASE, processed=5) == JobState.RUNNING
    time.sleep(SHORT_LEASE + 0.2)
    assert job_store.claim("other", LEASE) is None  # the heartbeat pushed the lease out
    assert job_store.get(job.id).processed == 5

    cancelling = job_store.request_cancel(job.id)

    assert cancelling.state == JobState.CANCELLING and not cancelling.state.done
    assert job_store.heartbeat(job.id, "w", LEASE, processed=6) == JobState.CANCELLING
    assert job_store.get(job.id).processed == 6


def test_heartbeat_of_a_job_never_claimed_is_none(job_store: JobStore) -> None:
    job = make_job(job_store)
    assert job_store.heartbeat(job.id, "w", LEASE) is None
    assert job_store.finish(job.id, "w", JobState.SUCCEEDED) is False
    assert job_store.get(job.id).state == JobState.QUEUED


def test_request_cancel_of_a_queued_job_ends_it_cancelled(job_store: JobStore) -> None:
    job = make_job(job_store)

    cancelled = job_store.request_cancel(job.id)

    assert cancelled.state == JobState.CANCELLED and cancelled.state.done
    assert cancelled.error is not None and cancelled.error["code"] == 1 and cancelled.error["message"]
    assert job_store.get(job.id) == cancelled
    assert job_store.claim("w", LEASE) is None


def test_request_cancel_leaves_a_done_job_alone_and_raises_for_unknown(job_store: JobStore) -> None:
    job = make_job(job_store, state=JobState.SUCCEEDED)
    assert job_store.request_cancel(job.id).state == JobState.SUCCEEDED
    assert job_store.get(job.id).error is None
    with pytest.raises(NotFound):
        job_store.request_cancel("no-such-operation")


def test_two_workers_racing_for_one_job_exactly_one_wins(job_store: JobStore, store_url: str) -> None:
    """Two stores on one database, as two processes would have; each round, both claim at the same instant."""
    other = JobStore(store_url)
    try:
        for _ in range(8):
            job = make_job(job_store)
            barrier = threading.Barrier(2)

            def claim(store: JobStore, owner: str, barrier: threading.Barrier = barrier) -> Job | None:
                barrier.wait()
                return store.claim(owner, LEASE)

            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(claim, [job_store, other], ["worker-a", "worker-b"]))

            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            assert winners[0].id == job.id
            owner = "worker-a" if results[0] is not None else "worker-b"
            assert job_store.heartbeat(job.id, owner, LEASE) == JobState.RUNNING
            loser = "worker-b" if owner == "worker-a" else "worker-a"
            assert job_store.heartbeat(job.id, loser, LEASE) is None
            assert job_store.finish(job.id, owner, JobState.SUCCEEDED) is True
    finally:
        other.close()


# ---------------------------------------------------------------------------------------------------- shards


def test_commit_shard_is_idempotent(job_store: JobStore) -> None:
    job = make_job(job_store)
    job_store.claim("w", LEASE)
    failure = [{"code": 3, "message": "gs://b/x.jpg: image cannot be decoded"}]

    assert job_store.commit_shard(job.id, "w", ShardRecord(0, 3, 1), failure) is True
    assert job_store.commit_shard(job.id, "w", ShardRecord(0, 3, 1), failure) is True  # a retried commit
    assert job_store.commit_shard(job.id, "w", ShardRecord(2, 4, 0), []) is True

    assert job_store.committed_shards(job.id) == [ShardRecord(0, 3, 1), ShardRecord(2, 4, 0)]
    assert job_store.get(job.id).partial_failures == failure  # listed once


def test_commit_shard_keeps_at_most_20_partial_failures_in_order(job_store: JobStore) -> None:
    job = make_job(job_store)
    job_store.claim("w", LEASE)

    def failures(shard: int, count: int) -> list[dict]:
        return [{"code": 5, "message": f"gs://b/{shard}-{i}.jpg: not found"} for i in range(count)]

    for shard in range(3):
        assert job_store.commit_shard(job.id, "w", ShardRecord(shard, 0, 15), failures(shard, 15))

    listed = job_store.get(job.id).partial_failures
    assert len(listed) == MAX_PARTIAL_FAILURES == 20
    assert listed == (failures(0, 15) + failures(1, 15))[:20]
    assert [s.failed for s in job_store.committed_shards(job.id)] == [15, 15, 15]  # all counted, few listed


def test_commit_shard_of_unknown_job_is_false(job_store: JobStore) -> None:
    assert job_store.commit_shard("no-such-job", "w", ShardRecord(0, 1, 0), []) is False
    assert job_store.committed_shards("no-such-job") == []


# ---------------------------------------------------------------------------------------------------- delete


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING])
def test_delete_of_an_unfinished_job_says_to_cancel_first(job_store: JobStore, state: JobState) -> None:
    job = make_job(job_store, state=state)

    with pytest.raises(FailedPrecondition) as raised:
        job_store.delete(job.id)

    assert "cancel" in raised.value.message.lower()
    assert raised.value.code == 9
    assert job_store.get(job.id).state == state  # still there


def test_delete_of_a_done_job_removes_it_and_its_shards(job_store: JobStore) -> None:
    job = make_job(job_store, created=1000.0)
    kept = make_job(job_store, created=1001.0)
    for j in (job, kept):
        claimed = job_store.claim("w", LEASE)
        assert claimed is not None and claimed.id == j.id
        job_store.commit_shard(j.id, "w", ShardRecord(0, 2, 0), [])
        job_store.commit_shard(j.id, "w", ShardRecord(1, 1, 1), [{"code": 3, "message": "m"}])
        job_store.finish(j.id, "w", JobState.SUCCEEDED)
    assert shard_rows(job_store, job.id) == 2

    job_store.delete(job.id)

    with pytest.raises(NotFound):
        job_store.get(job.id)
    assert shard_rows(job_store, job.id) == 0
    assert job_store.committed_shards(job.id) == []
    assert [j.id for j in job_store.list("p", "us-central1", None, 0, 10)] == [kept.id]
    assert len(job_store.committed_shards(kept.id)) == 2  # the other job's shards stay
    with pytest.raises(NotFound):
        job_store.delete(job.id)


# ---------------------------------------------------------------------------------------------- output folders

CREATED = 1_700_000_000.1234  # one millisecond for every job below: .123


def folder_names(count: int = 64, when: float = CREATED) -> list[str]:
    """A job's folder candidates as the worker makes them, without the storage check."""
    return [join("gs://b/out", output_dir_name("colors", when, step)) for step in range(count)]


def test_two_jobs_created_in_one_millisecond_get_different_folders(job_store: JobStore) -> None:
    first, second = make_job(job_store, created=CREATED), make_job(job_store, created=CREATED)

    claimed = [job_store.claim_output_dir(job.id, folder_names()) for job in (first, second)]

    assert claimed == [
        "gs://b/out/prediction-colors-2023-11-14T22:13:20.123Z",
        "gs://b/out/prediction-colors-2023-11-14T22:13:20.124Z",  # stepped by a millisecond
    ]

    assert job_store.get(first.id).output_dir == folder_names()[0]
    assert job_store.get(second.id).output_dir == folder_names()[1]
    # a job that has its folder keeps it, and claims no other
    assert job_store.claim_output_dir(first.id, folder_names()[5:]) == folder_names()[0]
    third = make_job(job_store, created=CREATED)
    assert job_store.claim_output_dir(third.id, folder_names()) == folder_names()[2]


def test_claim_output_dir_of_unknown_job_or_with_every_name_taken(job_store: JobStore) -> None:
    with pytest.raises(NotFound):
        job_store.claim_output_dir("no-such-job", folder_names(1))
    job_store.claim_output_dir(make_job(job_store).id, folder_names(1))
    late = make_job(job_store)

    with pytest.raises(AlreadyExists):
        job_store.claim_output_dir(late.id, folder_names(1))
    assert job_store.get(late.id).output_dir is None  # nothing half-claimed


def test_a_deleted_jobs_folder_is_never_handed_out_again(job_store: JobStore) -> None:
    """Its files stay in the bucket, so its name stays claimed."""
    gone = make_job(job_store, created=CREATED, state=JobState.SUCCEEDED)
    job_store.claim_output_dir(gone.id, folder_names())
    job_store.delete(gone.id)

    new = make_job(job_store, created=CREATED)
    assert job_store.claim_output_dir(new.id, folder_names()) == folder_names()[1]


def test_concurrent_claims_never_hand_out_a_name_twice(job_store: JobStore, store_url: str) -> None:
    """16 jobs of one millisecond claim at the same instant, from threads on one store and on a second one (as a
    second server on the same database would)."""
    other = JobStore(store_url)
    try:
        created = [make_job(job_store, created=CREATED) for _ in range(16)]
        barrier = threading.Barrier(len(created))

        def claim(index: int) -> str:
            store = job_store if index % 2 else other
            barrier.wait()
            return store.claim_output_dir(created[index].id, folder_names())

        with ThreadPoolExecutor(len(created)) as pool:
            claimed = list(pool.map(claim, range(len(created))))

        assert sorted(claimed) == folder_names(len(created))  # each once, stepped a millisecond at a time
        assert [job_store.get(j.id).output_dir for j in created] == claimed
        with job_store.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(output_dirs_table.c.uri, output_dirs_table.c.job_id)).all())
        assert rows == {uri: job.id for uri, job in zip(claimed, created, strict=True)}
    finally:
        other.close()


def test_output_dir_candidates_step_past_folders_that_exist_in_storage(tmp_path: Path) -> None:
    storage = Storage(Settings(data_dir=tmp_path))
    taken = tmp_path / "buckets" / "b" / "out" / "prediction-colors-2023-11-14T22:13:20.123Z"
    (taken / ".staging").mkdir(parents=True)
    (tmp_path / "buckets" / "b" / "out" / "prediction-colors-2023-11-14T22:13:20.125Z").mkdir()

    names = list(output_dir_candidates(storage, "gs://b/out/", "colors", CREATED, tries=4))

    assert names == [folder_names()[1], folder_names()[3]]


# ------------------------------------------------------------------------------------------------ the server


def test_postgres_url_is_a_private_throwaway_server(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:") and postgres_url.endswith("/batchline")
    store = JobStore(postgres_url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "batchline"
            assert conn.execute(sa.text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            socket_dir = conn.execute(sa.text("SHOW unix_socket_directories")).scalar_one()
            assert "batchline-pg-" in socket_dir  # its own temp dir, not /var/run/postgresql
            version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
        assert int(version) >= 150000
    finally:
        store.close()


# ------------------------------------------------------------------------------------ Vertex jobs beside AutoML


def make_vertex_job(store: JobStore, display_name: str, labels: dict[str, str], created: float, **extra) -> Job:
    return make_job(
        store, kind=JobKind.VERTEX_BATCH_PREDICTION, created=created, display_name=display_name, labels=labels, **extra
    )


def test_vertex_jobs_keep_display_name_labels_and_times(job_store: JobStore) -> None:
    job = make_vertex_job(job_store, "nightly", {"team": "a", "env": "prod"}, 1000.0)

    got = job_store.get(job.id)

    assert got == job
    assert (got.display_name, got.labels, got.start_time, got.end_time) == (
        "nightly",
        {"team": "a", "env": "prod"},
        None,
        None,
    )


def test_each_kind_lists_apart(job_store: JobStore) -> None:
    automl = make_job(job_store, created=1000.0)
    deploy = make_job(job_store, kind=JobKind.DEPLOY_MODEL, state=JobState.SUCCEEDED, created=1001.0)
    vertex = make_vertex_job(job_store, "v", {}, 1002.0)
    deleted = make_job(job_store, kind=JobKind.VERTEX_DELETE, state=JobState.SUCCEEDED, created=1003.0)

    def ids(kinds: tuple[JobKind, ...] | None = None) -> list[str]:
        if kinds is None:
            return [j.id for j in job_store.list("p", "us-central1", None, 0, 10)]
        return [j.id for j in job_store.list("p", "us-central1", None, 0, 10, kinds)]

    assert ids() == [deploy.id, automl.id]  # the AutoML operations, by default
    assert ids((JobKind.VERTEX_BATCH_PREDICTION,)) == [vertex.id]
    assert ids((JobKind.VERTEX_DELETE,)) == [deleted.id]


def test_list_conditions_on_state_display_name_labels_and_create_time(job_store: JobStore) -> None:
    a = make_vertex_job(job_store, "alpha", {"team": "a", "env": "prod"}, 1000.0)
    b = make_vertex_job(job_store, "beta", {"team": "b"}, 1001.0, state=JobState.SUCCEEDED)
    c = make_vertex_job(job_store, "alpha", {}, 1002.0, state=JobState.RUNNING)
    make_job(job_store, created=1003.0)  # an AutoML job matches nothing here

    def ids(*conditions: Condition, offset: int = 0, limit: int = 10) -> list[str]:
        found = job_store.list("p", "us-central1", None, offset, limit, (JobKind.VERTEX_BATCH_PREDICTION,), conditions)
        return [j.id for j in found]

    assert ids() == [c.id, b.id, a.id]
    assert ids(Condition("display_name", "=", "alpha")) == [c.id, a.id]
    assert ids(Condition("display_name", "!=", "alpha")) == [b.id]
    assert ids(Condition("state", "=", "SUCCEEDED")) == [b.id]
    assert ids(Condition("state", "!=", "SUCCEEDED")) == [c.id, a.id]
    assert ids(Condition("state", "=", "")) == []
    assert ids(Condition("labels.team", "=", "a")) == [a.id]
    assert ids(Condition("labels.team", "!=", "a")) == [c.id, b.id]  # no team label: not team a either
    assert ids(Condition("labels.team", ":", "*")) == [b.id, a.id]
    assert ids(Condition("create_time", ">", 1000.0)) == [c.id, b.id]
    assert ids(Condition("create_time", "<=", 1001.0), Condition("labels.env", "=", "prod")) == [a.id]
    assert ids(Condition("display_name", "=", "alpha"), offset=1, limit=1) == [a.id]


def test_claim_takes_only_the_kinds_asked_for(job_store: JobStore) -> None:
    vertex = make_vertex_job(job_store, "v", {}, 1000.0)
    automl = make_job(job_store, created=1001.0)

    assert job_store.claim("w", LEASE).id == automl.id  # workers that run AutoML jobs only leave Vertex jobs alone
    assert job_store.claim("w", LEASE) is None
    both = (JobKind.BATCH_PREDICT, JobKind.VERTEX_BATCH_PREDICTION)
    assert job_store.claim("w", LEASE, kinds=both).id == vertex.id


def test_start_time_is_the_first_claim_and_end_time_the_finish(job_store: JobStore) -> None:
    job = make_job(job_store, created=1000.0)
    job_store.claim("a", SHORT_LEASE)
    started = job_store.get(job.id).start_time
    time.sleep(SHORT_LEASE + 0.2)
    job_store.claim("b", LEASE)  # a takeover keeps the first start
    assert job_store.get(job.id).start_time == started and started is not None

    job_store.finish(job.id, "b", JobState.SUCCEEDED)

    done = job_store.get(job.id)
    assert done.end_time is not None and started < done.end_time
    cancelled = make_job(job_store)
    assert job_store.request_cancel(cancelled.id).end_time is not None


def test_shard_counts_sum_each_jobs_committed_shards(job_store: JobStore) -> None:
    first, second, idle = (make_job(job_store, created=1000.0 + i) for i in range(3))
    for _ in (first, second):
        job_store.claim("w", LEASE)
    job_store.commit_shard(first.id, "w", ShardRecord(0, 3, 1), [])
    job_store.commit_shard(first.id, "w", ShardRecord(1, 4, 0), [])
    job_store.commit_shard(second.id, "w", ShardRecord(0, 0, 2), [])

    assert job_store.shard_counts([first.id, second.id, idle.id]) == {first.id: (7, 1), second.id: (0, 2)}
    assert job_store.shard_counts([]) == {}


def test_deleting_a_job_removes_its_labels(job_store: JobStore) -> None:
    job = make_vertex_job(job_store, "v", {"team": "a"}, 1000.0, state=JobState.SUCCEEDED)
    job_store.delete(job.id)
    with job_store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM job_labels")).scalar_one() == 0


def test_a_database_from_before_vertex_jobs_gets_the_new_columns(store_url: str) -> None:
    """The jobs table as the previous release made it, with one job in it: opening the store upgrades it."""
    old = sa.MetaData()
    new = ("display_name", "labels", "start_time", "end_time")
    columns = [c for c in jobs_table.columns if c.name not in new]
    sa.Table("jobs", old, *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in columns))
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, kind, project, location, model_id, state, create_time, update_time, request, "
                "processed, failed, partial_failures, result_metadata) VALUES ('old', 'batch_predict', 'p', "
                "'us-central1', 'colors', 'SUCCEEDED', 1.0, 1.0, '{}', 0, 0, '[]', '{}')"
            )
        )
    engine.dispose()

    store = JobStore(store_url)
    try:
        old_job = store.get("old")
        assert (old_job.display_name, old_job.labels, old_job.start_time) == ("", {}, None)
        make_vertex_job(store, "new", {"team": "a"}, 2.0)
        found = store.list(
            "p",
            "us-central1",
            None,
            0,
            10,
            (JobKind.VERTEX_BATCH_PREDICTION,),
            (Condition("display_name", "=", "new"),),
        )
        assert [j.display_name for j in found] == ["new"]
    finally:
        store.close()
