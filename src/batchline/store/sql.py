"""Job records, committed shards and leases in SQL. Claims, heartbeats, commits and finishes are compare-and-set
on the lease owner, so a worker that lost its job can change nothing of it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batchline.domain.jobs import (
    AUTOML_KINDS,
    MAX_PARTIAL_FAILURES,
    Condition,
    Job,
    JobKind,
    JobState,
    ShardRecord,
)
from batchline.errors import AlreadyExists, FailedPrecondition, NotFound

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("project", sa.String(128), nullable=False),
    sa.Column("location", sa.String(128), nullable=False),
    sa.Column("model_id", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("create_time", sa.Float, nullable=False, index=True),
    sa.Column("update_time", sa.Float, nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("output_dir", sa.Text),
    sa.Column("total", sa.Integer),
    sa.Column("processed", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("partial_failures", sa.JSON, nullable=False),
    sa.Column("error", sa.JSON),
    sa.Column("result_metadata", sa.JSON, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires", sa.Float),
    # Added for Vertex jobs; a database made before them gets them on open (see _add_missing_columns).
    sa.Column("display_name", sa.String(128), nullable=False, server_default="", index=True),
    sa.Column("labels", sa.JSON),
    sa.Column("start_time", sa.Float),
    sa.Column("end_time", sa.Float),
)

# Labels again, one row each, so that `labels.KEY = "value"` is one indexed lookup on SQLite and PostgreSQL alike
# (their JSON operators differ); jobs.labels stays the copy that is read back.
job_labels = sa.Table(
    "job_labels",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Index("ix_job_labels_key_value", "key", "value"),
)

shards = sa.Table(
    "job_shards",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("shard_index", sa.Integer, primary_key=True),
    sa.Column("succeeded", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("writer", sa.String(64), nullable=False),
)

# Every output folder a job has taken, by its full URI: the primary key makes a name one job's, on every server
# that shares this database (see claim_output_dir). No foreign key to jobs: a deleted job's row stays. Folders of
# jobs from before this table have no row; the worker skips names whose folder exists in storage, which covers them.
output_dirs = sa.Table(
    "output_dirs",
    metadata,
    sa.Column("uri", sa.Text, primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False),
)

_JOB_FIELDS = [c.name for c in jobs.columns if c.name not in ("lease_owner", "lease_expires")]


def _engine(url: str) -> sa.Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _row_to_job(row: Any) -> Job:
    data = {name: getattr(row, name) for name in _JOB_FIELDS}
    data["kind"] = JobKind(data["kind"])
    data["state"] = JobState(data["state"])
    data["labels"] = data["labels"] or {}
    return Job(**data)


def _add_missing_columns(engine: sa.Engine) -> None:
    """Columns added to `jobs` since a database was made: ALTER TABLE them in (create_all adds only tables)."""
    present = {c["name"] for c in sa.inspect(engine).get_columns("jobs")}
    with engine.begin() as conn:
        for column in jobs.columns:
            if column.name in present:
                continue
            ddl = f"ALTER TABLE jobs ADD COLUMN {column.name} {column.type.compile(dialect=engine.dialect)}"
            if column.server_default is not None:
                ddl += f" DEFAULT '{column.server_default.arg}'"
            if not column.nullable:
                ddl += " NOT NULL"
            conn.execute(sa.text(ddl))


_HALF_MICROSECOND = 5e-7
_COMPARE = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}


def _where(condition: Condition) -> sa.ColumnElement[bool]:
    """A list filter's condition as SQL (the parser has checked fields and operators)."""
    field, op, value = condition.field, condition.op, condition.value
    if field.startswith("labels."):
        label = sa.select(job_labels.c.job_id).where(
            job_labels.c.job_id == jobs.c.id, job_labels.c.key == field.removeprefix("labels.")
        )
        if op == ":":
            return label.exists()
        matching = label.where(job_labels.c.value == value).exists()
        return matching if op == "=" else ~matching
    if field == "create_time":
        return _at_microseconds(op, float(value))
    column = {"state": jobs.c.state, "display_name": jobs.c.display_name}[field]
    return _COMPARE[op](column, value)


def _at_microseconds(op: str, seconds: float) -> sa.ColumnElement[bool]:
    """create_time compared as the API shows it, to the microsecond: a time read from a job matches it with `=`."""
    low, high = seconds - _HALF_MICROSECOND, seconds + _HALF_MICROSECOND
    column = jobs.c.create_time
    return {
        "=": sa.and_(column >= low, column < high),
        "!=": sa.or_(column < low, column >= high),
        "<": column < low,
        "<=": column < high,
        ">": column >= high,
        ">=": column >= low,
    }[op]


class JobStore:
    def __init__(self, url: str):
        self.engine = _engine(url)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- records
    def create(self, job: Job) -> Job:
        values = {name: getattr(job, name) for name in _JOB_FIELDS}
        with self._tx() as conn:
            conn.execute(jobs.insert().values(**values, lease_owner=None, lease_expires=None))
            if job.labels:
                rows = [{"job_id": job.id, "key": key, "value": value} for key, value in job.labels.items()]
                conn.execute(job_labels.insert(), rows)
        return job

    def get(self, job_id: str) -> Job:
        with self._tx() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"operation {job_id!r} not found")
        return _row_to_job(row)

    def list(
        self,
        project: str,
        location: str,
        done: bool | None,
        offset: int,
        limit: int,
        kinds: tuple[JobKind, ...] = AUTOML_KINDS,
        conditions: tuple[Condition, ...] = (),
    ) -> list[Job]:
        """Jobs of these kinds in one project and location, newest first, where every condition holds."""
        query = sa.select(jobs).where(
            jobs.c.project == project, jobs.c.location == location, jobs.c.kind.in_([k.value for k in kinds])
        )
        terminal = [s.value for s in JobState if s.done]
        if done is not None:
            query = query.where(jobs.c.state.in_(terminal) if done else jobs.c.state.not_in(terminal))
        query = query.where(*(_where(c) for c in conditions))
        query = query.order_by(jobs.c.create_time.desc(), jobs.c.id).offset(offset).limit(limit)
        with self._tx() as conn:
            return [_row_to_job(row) for row in conn.execute(query)]

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if not job.state.done:
            raise FailedPrecondition(
                f"operation {job_id} is still running; cancel it first (POST ...:cancel), then delete it"
            )
        # The job's output_dirs row stays: its files stay in the bucket, so its folder name must not go to a new job
        # (the storage check of output_dir_candidates would see most such folders, but not one still empty, nor
        # one on an object store whose listing lags).
        with self._tx() as conn:
            conn.execute(shards.delete().where(shards.c.job_id == job_id))
            conn.execute(job_labels.delete().where(job_labels.c.job_id == job_id))
            conn.execute(jobs.delete().where(jobs.c.id == job_id))

    def update(self, job_id: str, **values: Any) -> None:
        with self._tx() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values, update_time=time.time()))

    def claim_output_dir(self, job_id: str, candidates: Iterable[str]) -> str:
        """Make the first of these folder URIs that no job has claimed the job's output_dir, and return it. A job
        that has one already keeps it (and gets it back). AlreadyExists if every candidate is taken."""
        for uri in candidates:
            try:
                with self._tx() as conn:
                    # The job's row first: a write, it takes the write lock before anything is read (see commit_shard).
                    chosen = conn.execute(
                        jobs.update()
                        .where(jobs.c.id == job_id, jobs.c.output_dir.is_(None))
                        .values(output_dir=uri, update_time=time.time())
                    )
                    if chosen.rowcount != 1:
                        kept = conn.execute(sa.select(jobs.c.output_dir).where(jobs.c.id == job_id)).first()
                        if kept is None:
                            raise NotFound(f"operation {job_id!r} not found")
                        return kept.output_dir
                    conn.execute(output_dirs.insert().values(uri=uri, job_id=job_id))  # another job's: rolled back
                return uri
            except sa.exc.IntegrityError:
                continue
        raise AlreadyExists(f"no free output folder for operation {job_id}: every name offered is taken")

    # -- state changes
    def request_cancel(self, job_id: str) -> Job:
        """QUEUED jobs end CANCELLED at once; running ones become CANCELLING for their worker to stop."""
        now = time.time()
        error = {"code": 1, "message": "cancelled by the user"}
        with self._tx() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value)
                .values(state=JobState.CANCELLED.value, error=error, update_time=now, end_time=now)
            )
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state == JobState.RUNNING.value)
                .values(state=JobState.CANCELLING.value, update_time=now)
            )
        return self.get(job_id)

    def claim(
        self, owner: str, lease_seconds: float, kinds: tuple[JobKind, ...] = (JobKind.BATCH_PREDICT,)
    ) -> Job | None:
        """Take the oldest queued job of these kinds, or one whose worker stopped renewing its lease."""
        now = time.time()
        claimable = sa.or_(
            jobs.c.state == JobState.QUEUED.value,
            sa.and_(
                jobs.c.state.in_([JobState.RUNNING.value, JobState.CANCELLING.value]),
                sa.or_(jobs.c.lease_expires.is_(None), jobs.c.lease_expires < now),
            ),
        )
        with self._tx() as conn:
            candidates = conn.execute(
                sa.select(jobs.c.id, jobs.c.lease_owner, jobs.c.state)
                .where(claimable, jobs.c.kind.in_([k.value for k in kinds]))
                .order_by(jobs.c.create_time)
                .limit(5)
            ).all()
            for job_id, previous_owner, state in candidates:
                new_state = JobState.RUNNING.value if state == JobState.QUEUED.value else state
                taken = conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.state == state, claimable)
                    .where(
                        jobs.c.lease_owner.is_(None) if previous_owner is None else jobs.c.lease_owner == previous_owner
                    )
                    .values(
                        state=new_state,
                        lease_owner=owner,
                        lease_expires=now + lease_seconds,
                        update_time=now,
                        start_time=sa.func.coalesce(jobs.c.start_time, now),
                    )
                )
                if taken.rowcount == 1:
                    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
                    return _row_to_job(row)
        return None

    def heartbeat(self, job_id: str, owner: str, lease_seconds: float, **progress: Any) -> JobState | None:
        """Renew the lease and record progress; the job's state now, or None if the lease was lost."""
        now = time.time()
        with self._tx() as conn:
            renewed = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.lease_owner == owner)
                .values(lease_expires=now + lease_seconds, update_time=now, **progress)
            )
            if renewed.rowcount != 1:
                return None
            return JobState(conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar_one())

    def finish(self, job_id: str, owner: str, state: JobState, **values: Any) -> bool:
        now = time.time()
        if state.done:
            values.setdefault("end_time", now)
        with self._tx() as conn:
            done = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.lease_owner == owner)
                .values(state=state.value, lease_owner=None, lease_expires=None, update_time=now, **values)
            )
        return done.rowcount == 1

    def release(self, job_id: str, owner: str) -> None:
        """Give the lease up now (a clean shutdown), so the next worker need not wait for it to run out."""
        with self._tx() as conn:
            conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.lease_owner == owner).values(lease_expires=0.0)
            )

    # -- shards: the unit of commit and resume
    def commit_shard(self, job_id: str, owner: str, shard: ShardRecord, failures: list[dict[str, Any]]) -> bool:
        """Record a published shard once; False if this worker no longer holds the job."""
        with self._tx() as conn:
            # The owner-checked write comes first: it takes the row (PostgreSQL) or database (SQLite) write lock,
            # so no takeover can slip in between this check and the insert.
            held = conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.lease_owner == owner).values(update_time=time.time())
            )
            if held.rowcount != 1:
                return False
            exists = conn.execute(
                sa.select(shards.c.shard_index).where(shards.c.job_id == job_id, shards.c.shard_index == shard.index)
            ).first()
            if exists:
                return True
            conn.execute(
                shards.insert().values(
                    job_id=job_id, shard_index=shard.index, succeeded=shard.succeeded, failed=shard.failed, writer=owner
                )
            )
            listed = conn.execute(sa.select(jobs.c.partial_failures).where(jobs.c.id == job_id)).scalar_one()
            listed = [*listed, *failures[: MAX_PARTIAL_FAILURES - len(listed)]]
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(partial_failures=listed))
        return True

    def committed_shards(self, job_id: str) -> list[ShardRecord]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(shards.c.shard_index, shards.c.succeeded, shards.c.failed, shards.c.writer)
                .where(shards.c.job_id == job_id)
                .order_by(shards.c.shard_index)
            ).all()
        return [ShardRecord(*row) for row in rows]

    def shard_counts(self, job_ids: list[str]) -> dict[str, tuple[int, int]]:
        """(succeeded, failed) inputs in each job's committed shards; jobs with none are left out."""
        if not job_ids:
            return {}
        query = (
            sa.select(shards.c.job_id, sa.func.sum(shards.c.succeeded), sa.func.sum(shards.c.failed))
            .where(shards.c.job_id.in_(job_ids))
            .group_by(shards.c.job_id)
        )
        with self._tx() as conn:
            return {job_id: (int(ok), int(bad)) for job_id, ok, bad in conn.execute(query)}
