"""Rule drafts: plain English (or the structured rule form) -> a validated draft -> confirmed save.

The Rules page's chat panel posts a request; the server asks the site's language model
(:mod:`safewatch.llm`), validates and guards the reply, and keeps the resulting draft **on the
server** under a random id. The page shows it (YAML, diff, plain words) and saving names only that
id: the browser never sends the text to be written, so what is saved is exactly what passed the
gates and what the operator saw. Without an ``llm`` block in the site file the page offers a
structured rule form instead; its rule goes through the same gates, without a model.

Drafting and saving need an operator or admin (a viewer may not draft), and a draft that changes
an existing rule, zone or line (``allow_modify``) needs an admin; a draft is saved only by
the user who made it, within an hour, and the save is recorded in the audit log
(``rules.draft_saved``) and reloads the rules like any other save.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import yaml
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from safewatch.api.auth.principal import Principal
from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import DashboardDep, Operator, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError, ErrorDetail
from safewatch.api.schemas import ReloadStatusOut
from safewatch.config.rules import WEEKDAYS
from safewatch.domain.events import Severity
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

__all__ = ["DraftStore", "router"]

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
class _Stored:
    result: DraftResult
    owner: str
    at: float


class DraftStore:
    """Drafts awaiting confirmation, in memory, by id (an hour at most, 200 at most).

    Args:
        ttl: Seconds a draft may wait for its confirmation.
        capacity: Most drafts kept; the oldest go first.
        clock: Monotonic clock (tests pass their own).
    """

    def __init__(
        self, ttl: float = 3600.0, capacity: int = 200, clock: Any = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._drafts: OrderedDict[str, _Stored] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: DraftResult, owner: str) -> str:
        """Keep a draft; returns its id."""
        draft_id = secrets.token_urlsafe(18)
        with self._lock:
            self._expire()
            self._drafts[draft_id] = _Stored(result, owner, self._clock())
            while len(self._drafts) > self._capacity:
                self._drafts.popitem(last=False)
        return draft_id

    def get(self, draft_id: str, owner: str) -> DraftResult:
        """The draft with this id, made by ``owner``.

        Raises:
            ApiError: 404 if unknown, expired, already saved, or made by someone else.
        """
        with self._lock:
            self._expire()
            stored = self._drafts.get(draft_id)
            if stored is None or stored.owner != owner:
                raise ApiError(
                    404, "not_found", "no such draft (drafts expire after an hour); draft again"
                )
            return stored.result

    def discard(self, draft_id: str) -> None:
        """Forget a draft (once saved: a draft is saved at most once)."""
        with self._lock:
            self._drafts.pop(draft_id, None)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, v in self._drafts.items() if now - v.at > self._ttl]:
            del self._drafts[key]


def _store(request: Request) -> DraftStore:
    store = getattr(request.app.state, "rule_drafts", None)
    if store is None:
        store = request.app.state.rule_drafts = DraftStore()
    assert isinstance(store, DraftStore)
    return store


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
async def draft(
    body: DraftIn, request: Request, user: Operator, dashboard: DashboardDep
) -> DraftOut:
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
    draft_id = _store(request).put(result, user.username) if result.valid else None
    return _out(result, draft_id)


@router.post("/form", response_model=DraftOut, summary="Check a rule from the structured form")
async def form(body: FormIn, request: Request, user: Operator, dashboard: DashboardDep) -> DraftOut:
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
    draft_id = _store(request).put(result, user.username) if result.valid else None
    return _out(result, draft_id)


@router.post("/{draft_id}/save", response_model=SavedOut, summary="Confirm and save a draft")
async def save(
    draft_id: DraftId, request: Request, user: Operator, dashboard: DashboardDep
) -> SavedOut:
    """Save a draft this user made: checked again against the files as they are now, written
    atomically, recorded in the audit log, and the rules reloaded."""
    drafts = _store(request)
    result = drafts.get(draft_id, user.username)
    if any(change.action == "modify" for change in result.changes):
        _may_change_existing(user)
    source = "form" if result.model == "form" else "api"

    def run() -> SavedOut:
        saved = save_draft(
            result,
            # The target itself, not its name: a single rules file is named by its path.
            _workspace(dashboard, str(result.target)),
            actor=user.username,
            audit=dashboard.auth,
            source=source,
            client=client_of(request),
        )
        drafts.discard(draft_id)
        status = dashboard.rules.reload_rules()
        return SavedOut(file=saved.target.name, status=ReloadStatusOut.of(status))

    try:
        return await anyio.to_thread.run_sync(run)
    except DraftError as exc:
        raise _translate(exc) from None
