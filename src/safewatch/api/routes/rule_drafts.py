"""Rule drafts: plain English (or the structured rule form) -> a validated draft -> confirmed save.

The Rules page's chat panel posts a request; the server asks the site's language model
(:mod:`safewatch.llm`), validates and guards the reply, and keeps the resulting draft **on the
server** (in the site database, so that any API node can save it) under a random id. The page
shows it (YAML, diff, plain words) and saving names only that id: the browser never sends the
text to be written, so what is saved is exactly what passed the gates and what the operator saw.
Without an ``llm`` block in the site file the page offers a structured rule form instead; its
rule goes through the same gates, without a model.

Drafting and saving need an operator or admin (a viewer may not draft), and a draft that changes
an existing rule, zone or line (``allow_modify``) needs an admin; a draft is saved only by
the user who made it, within an hour, and the save is recorded in the audit log
(``rules.draft_saved``) and reloads the rules like any other save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import yaml
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.orm import Session

from safewatch.api.auth.principal import Principal
from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Operator, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail
from safewatch.api.schemas import ReloadStatusOut
from safewatch.config.rules import WEEKDAYS
from safewatch.domain.events import Severity
from safewatch.errors import StorageError
from safewatch.llm import (
    DraftError,
    DraftRefused,
    DraftResult,
    DraftTurn,
    LLMError,
    LLMNotConfigured,
    LLMTimeout,
    OpenAIChatClient,
    RuleDrafter,
    RuleWorkspace,
    StaleDraft,
    check_draft_text,
    save_draft,
)
from safewatch.llm.prompt import site_labels
from safewatch.llm.workspace import DEFAULT_TARGET
from safewatch.storage.draft_tables import RuleDraftRow
from safewatch.storage.engine import transaction

__all__ = ["DraftStore", "TakenDraft", "router"]

router = APIRouter(prefix="/api/v1/rule-drafts", tags=["rule drafts"], responses=ERROR_RESPONSES)

DraftId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
TargetName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.ya?ml$", description="Rule file.")
]
_KINDS = (
    "ppe",
    "zone_intrusion",
    "dwell",
    "line_crossing",
    "proximity",
    "occupancy",
    "zone_clear",
    "speed",
)


@dataclass(frozen=True, slots=True)
class TakenDraft:
    """A draft :meth:`DraftStore.take` removed, to save (or to give back if saving failed)."""

    id: str
    result: DraftResult
    owner: str
    at: float


_NO_SUCH_DRAFT = "no such draft (drafts expire after an hour); draft again"


class DraftStore:
    """Drafts awaiting confirmation, in the site database, by id (an hour at most, 200 at most).

    The database, not this process's memory: behind a load balancer (``serve --cluster``, several
    API nodes) the confirmation may reach another node than the draft, which answered 404, and a
    restart lost every draft in flight. Times are epoch seconds of the wall clock, as the
    sessions' are (:class:`~safewatch.api.auth.store.AuthStore`): nodes' clocks agree far better
    than the hour a draft lives.

    Args:
        engine: The site's database (migration ``0014`` made its ``rule_drafts`` table).
        ttl: Seconds a draft may wait for its confirmation.
        capacity: Most drafts kept; the oldest go first.
        clock: Wall clock, epoch seconds (tests pass their own).
    """

    def __init__(
        self,
        engine: Engine,
        ttl: float = 3600.0,
        capacity: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock

    def put(self, result: DraftResult, owner: str) -> str:
        """Keep a draft; returns its id."""
        draft_id = secrets.token_urlsafe(18)
        now = self._clock()
        with transaction(self._engine, "keep the rule draft") as session:
            self._expire(session, now)
            session.execute(
                insert(RuleDraftRow).values(
                    id=draft_id, owner=owner, created_at=now, payload=result.to_json()
                )
            )
            newest_first = RuleDraftRow.created_at.desc(), RuleDraftRow.id.desc()
            over = session.scalars(
                select(RuleDraftRow.id).order_by(*newest_first).offset(self._capacity)
            ).all()
            if over:
                session.execute(delete(RuleDraftRow).where(RuleDraftRow.id.in_(over)))
        return draft_id

    def get(self, draft_id: str, owner: str) -> DraftResult:
        """The draft with this id, made by ``owner``.

        Raises:
            ApiError: 404 if unknown, expired, already saved, or made by someone else.
        """
        with transaction(self._engine, "read the rule draft") as session:
            self._expire(session, self._clock())
            payload = session.scalar(
                select(RuleDraftRow.payload).where(
                    RuleDraftRow.id == draft_id, RuleDraftRow.owner == owner
                )
            )
        if payload is None:
            raise ApiError(404, "not_found", _NO_SUCH_DRAFT)
        return _decoded(payload)

    def take(self, draft_id: str, owner: str) -> TakenDraft:
        """Remove the draft with this id, made by ``owner``, and return it: of two confirmations
        racing (on one node or two), only the one whose ``DELETE ... RETURNING`` found the row
        saves it, so a draft is saved at most once.

        Raises:
            ApiError: 404 as :meth:`get` (and for the confirmation that lost the race).
        """
        now = self._clock()
        with transaction(self._engine, "take the rule draft") as session:
            self._expire(session, now)
            row = session.execute(
                delete(RuleDraftRow)
                .where(RuleDraftRow.id == draft_id, RuleDraftRow.owner == owner)
                .returning(RuleDraftRow.created_at, RuleDraftRow.payload)
                .execution_options(synchronize_session=False)
            ).first()
        if row is None:
            raise ApiError(404, "not_found", _NO_SUCH_DRAFT)
        return TakenDraft(draft_id, _decoded(row.payload), owner, row.created_at)

    def give_back(self, taken: TakenDraft) -> None:
        """Keep a taken draft again, as it was (its saving failed and wrote nothing)."""
        with transaction(self._engine, "keep the rule draft") as session:
            session.execute(
                insert(RuleDraftRow).values(
                    id=taken.id,
                    owner=taken.owner,
                    created_at=taken.at,
                    payload=taken.result.to_json(),
                )
            )

    def discard(self, draft_id: str) -> None:
        """Forget a draft."""
        with transaction(self._engine, "forget the rule draft") as session:
            session.execute(delete(RuleDraftRow).where(RuleDraftRow.id == draft_id))

    def _expire(self, session: Session, now: float) -> None:
        session.execute(delete(RuleDraftRow).where(RuleDraftRow.created_at < now - self._ttl))


def _decoded(payload: Any) -> DraftResult:
    """A stored draft; one another safewatch version wrote and this one cannot read (a rolling
    upgrade) is a 404 that says to draft again, not a 500."""
    try:
        return DraftResult.from_json(payload)
    except (ValueError, TypeError, KeyError) as exc:
        raise ApiError(
            404,
            "not_found",
            f"this draft was made by another safewatch version ({exc}); draft again",
        ) from None


def _store(dashboard: Dashboard) -> DraftStore:
    """The drafts, on the site's database (no state of its own: one per request is free)."""
    return DraftStore(dashboard.storage.engine)


async def _keep(dashboard: Dashboard, result: DraftResult, user: Principal) -> str | None:
    """Keep a valid draft for its confirmation (off the event loop: a database write)."""
    if not result.valid:
        return None
    return await anyio.to_thread.run_sync(_store(dashboard).put, result, user.username)


class TurnIn(BaseModel):
    """An earlier request of the same chat and the draft it gave."""

    model_config = ConfigDict(extra="forbid")
    request: str = Field(max_length=2000)
    draft_yaml: str = Field("", max_length=20_000)


class DraftIn(BaseModel):
    """A request in plain words."""

    model_config = ConfigDict(extra="forbid")
    request: str = Field(min_length=1, max_length=2000, description="What the rule enforces.")
    target: TargetName | None = Field(None, description="Rule file; default drafts.yaml.")
    allow_modify: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Existing ids the draft may change; the request must name them too.",
    )
    history: list[TurnIn] = Field(default_factory=list, max_length=10)


class FormIn(BaseModel):
    """A rule built with the structured form (and zones or lines it adds)."""

    model_config = ConfigDict(extra="forbid")
    rule: dict[str, Any] = Field(description="One rule, as in a rule file.")
    target: TargetName | None = None


class ChangeOut(BaseModel):
    """One item the draft adds or changes."""

    kind: Literal["rule", "zone", "line"]
    id: str
    action: Literal["add", "modify"]
    disables: bool


class DraftOut(BaseModel):
    """A draft to review; ``id`` confirms it (valid drafts only)."""

    id: str | None
    valid: bool
    target: str
    yaml: str
    diff: str
    explanation: list[str]
    warnings: list[str]
    assumptions: str = Field(
        description="The model's own words beside its draft (what it assumed); empty for the "
        "structured form."
    )
    changes: list[ChangeOut]
    rounds: int
    errors: list[str]
    round_errors: list[list[str]]
    model: str


class SavedOut(BaseModel):
    """What a confirmed save did."""

    file: str
    status: ReloadStatusOut


class SetupOut(BaseModel):
    """What the Rules page needs to offer drafting: the model, or the form's choices."""

    llm: bool
    model: str | None
    default_target: str
    files: list[str]
    kinds: list[str]
    severities: list[str]
    weekdays: list[str]
    cameras: list[str]
    calibrated_cameras: list[str]
    zones: list[str]
    lines: list[str]
    objects: list[str]
    ppe_items: list[str]


def _workspace(dashboard: Dashboard, target: str | None) -> RuleWorkspace:
    return RuleWorkspace(dashboard.site().config, dashboard.rules_path, target)


def _out(result: DraftResult, draft_id: str | None) -> DraftOut:
    return DraftOut(
        id=draft_id,
        valid=result.valid,
        target=result.target.name,
        yaml=result.yaml,
        diff=result.diff,
        explanation=list(result.explanation),
        warnings=list(result.warnings),
        assumptions=result.assumptions,
        changes=[
            ChangeOut(kind=c.kind, id=c.id, action=c.action, disables=c.disables)
            for c in result.changes
        ],
        rounds=result.rounds,
        errors=list(result.errors),
        round_errors=[list(errors) for errors in result.round_errors],
        model=result.model,
    )


def _translate(exc: DraftError | LLMError) -> ApiError:
    if isinstance(exc, LLMNotConfigured):
        return ApiError(409, "llm_not_configured", str(exc))
    if isinstance(exc, LLMTimeout):
        return ApiError(504, "llm_timeout", str(exc))
    if isinstance(exc, LLMError):
        return ApiError(502, "llm_unavailable", str(exc))
    if isinstance(exc, DraftRefused):
        details = [ErrorDetail(message=reason) for reason in exc.reasons]
        return ApiError(422, "draft_refused", str(exc), details=details)
    if isinstance(exc, StaleDraft):
        return ApiError(409, "stale_draft", str(exc))
    return ApiError(422, "invalid_draft", str(exc))


@router.get("/setup", response_model=SetupOut, summary="Drafting: model or form choices")
async def setup(_user: Viewer, dashboard: DashboardDep) -> SetupOut:
    """Whether a model is configured, and the site's choices for the structured form."""
    site = dashboard.site().config
    rules = dashboard.rules.rule_generation().rules
    labels = site_labels(site)
    files = [f.name for f in rules.files] if rules.files else []
    return SetupOut(
        llm=site.llm is not None,
        model=site.llm.model if site.llm is not None else None,
        default_target=DEFAULT_TARGET
        if dashboard.rules_path.is_dir()
        else dashboard.rules_path.name,
        files=files,
        kinds=list(_KINDS),
        severities=[s.value for s in Severity],
        weekdays=list(WEEKDAYS),
        cameras=list(site.cameras),
        calibrated_cameras=[k for k, c in site.cameras.items() if c.calibration is not None],
        zones=[z.id for z in rules.zones],
        lines=[line.id for line in rules.lines],
        objects=list(labels.objects),
        ppe_items=list(labels.ppe_items),
    )


def _may_change_existing(user: Principal) -> None:
    """Changing (or disabling) an existing rule, zone or line needs the admin role, as the rule
    editor and ``PUT /rules/{id}/enabled`` do: operators draft and save additions only.

    Raises:
        ApiError: 403 for anyone below admin.
    """
    if not user.can("admin"):
        raise ApiError(
            403,
            "forbidden",
            "changing existing rules, zones or lines (allow_modify) needs the admin role; "
            f"{user.username} is {user.role} and may draft additions only",
        )


@router.post("", response_model=DraftOut, summary="Draft rules from plain words")
async def draft(body: DraftIn, user: Operator, dashboard: DashboardDep) -> DraftOut:
    """Ask the site's language model for a draft, validate it (repairing up to twice), keep it.

    Nothing is written: confirm a valid draft with ``POST /api/v1/rule-drafts/{id}/save``.
    """
    settings = dashboard.site().config.llm
    if settings is None:
        raise _translate(
            LLMNotConfigured(
                "no language model configured for this site (an `llm:` block in the site "
                "file, docs/llm.md); use the structured rule form"
            )
        )
    if body.allow_modify:
        _may_change_existing(user)
    history = [DraftTurn(t.request, t.draft_yaml) for t in body.history]

    def run() -> DraftResult:
        workspace = _workspace(dashboard, body.target)
        with OpenAIChatClient.from_config(settings) as client:
            drafter = RuleDrafter(client, max_repairs=settings.max_repairs)
            return drafter.draft(
                body.request, workspace, allow_modify=body.allow_modify, history=history
            )

    try:
        result = await anyio.to_thread.run_sync(run)
    except (DraftError, LLMError) as exc:
        raise _translate(exc) from None
    draft_id = await _keep(dashboard, result, user)
    return _out(result, draft_id)


@router.post("/form", response_model=DraftOut, summary="Check a rule from the structured form")
async def form(body: FormIn, user: Operator, dashboard: DashboardDep) -> DraftOut:
    """Run a rule built with the form through the same gates as a model's draft; keep it."""
    text = yaml.safe_dump({"version": 1, "rules": [body.rule]}, sort_keys=False)
    rule_id = str(body.rule.get("id", "?"))[:64]
    kind = str(body.rule.get("kind", "?"))[:32]

    def run() -> DraftResult:
        return check_draft_text(
            text,
            _workspace(dashboard, body.target),
            request=f"structured rule form: {kind} rule {rule_id}",
            source="form",
        )

    try:
        result = await anyio.to_thread.run_sync(run)
    except DraftError as exc:
        raise _translate(exc) from None
    draft_id = await _keep(dashboard, result, user)
    return _out(result, draft_id)


@router.post("/{draft_id}/save", response_model=SavedOut, summary="Confirm and save a draft")
async def save(
    draft_id: DraftId, request: Request, user: Operator, dashboard: DashboardDep
) -> SavedOut:
    """Save a draft this user made: checked again against the files as they are now, written
    atomically, recorded in the audit log, and the rules reloaded."""
    drafts = _store(dashboard)

    def run() -> SavedOut:
        result = drafts.get(draft_id, user.username)
        if any(change.action == "modify" for change in result.changes):
            _may_change_existing(user)
        taken = drafts.take(draft_id, user.username)
        try:
            # By its name, in this node's rules folder: the draft may come from another API
            # node whose folder is mounted at another path (a bare name also names a single
            # rules file). The base digest still refuses a draft of a different file.
            workspace = _workspace(dashboard, taken.result.target.name)
            saved = save_draft(
                dataclasses.replace(taken.result, target=workspace.target),
                workspace,
                actor=user.username,
                audit=dashboard.auth,
                source="form" if taken.result.model == "form" else "api",
                client=client_of(request),
            )
        except BaseException:
            # Not saved: the draft may be confirmed again (a failure after the file was written
            # leaves the draft stale, so it still cannot be saved twice). Giving it back must
            # not hide why the save failed.
            with contextlib.suppress(StorageError):
                drafts.give_back(taken)
            raise
        status = dashboard.rules.reload_rules()
        return SavedOut(file=saved.target.name, status=ReloadStatusOut.of(status))

    try:
        return await anyio.to_thread.run_sync(run)
    except DraftError as exc:
        raise _translate(exc) from None
