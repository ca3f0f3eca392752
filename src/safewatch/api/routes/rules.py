"""Rules: read the rule set in force with plain-language explanations, read and edit the rule
files (validated as a whole set before anything is written, see :mod:`safewatch.api.rulefiles`),
switch rules on and off, and see or trigger the hot reload.

Reading needs a viewer; changing rules needs an admin, and every save is written to the audit log
(with the file and its new SHA-256) before it is put in place and reloaded.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from safewatch.api.dashboard import Dashboard
from safewatch.api.deps import Admin, DashboardDep, Viewer, client_of
from safewatch.api.errors import ERROR_RESPONSES, ApiError, config_details
from safewatch.api.rulefiles import MAX_FILE_BYTES, Record, RuleFiles, SaveResult, etag
from safewatch.api.schemas import ReloadStatusOut, ValidationOut
from safewatch.config.ruleset import RuleSet
from safewatch.errors import ConfigError
from safewatch.llm.workspace import sha256_text
from safewatch.rules.explain import explain_rule

__all__ = ["recorder", "router", "rule_files", "saved"]

router = APIRouter(prefix="/api/v1/rules", tags=["rules"], responses=ERROR_RESPONSES)

FileName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.ya?ml$")]
RuleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
IfMatch = Annotated[
    str | None,
    Header(
        alias="if-match",
        description="The file's ETag as read: refused with 409 if the file changed since.",
    ),
]


def rule_files(dashboard: Dashboard) -> RuleFiles:
    """The rule files of the dashboard's site."""
    return RuleFiles(dashboard.rules_path, lambda: dashboard.site().config)


class RuleOut(BaseModel):
    """A rule of the set in force."""

    id: str
    kind: str
    enabled: bool
    severity: str
    description: str | None
    cameras: list[str]
    zones: list[str]
    explanation: str


class RulesOut(BaseModel):
    """The rule set in force and the reload state."""

    generation: int
    files: list[str]
    rules: list[RuleOut]
    status: ReloadStatusOut


class RuleFileOut(BaseModel):
    """A rule file's text and its version (also the ``ETag`` header), for ``If-Match``."""

    name: str
    text: str
    etag: str


class RuleFileIn(BaseModel):
    """A rule file's new text."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=MAX_FILE_BYTES)


class SaveOut(BaseModel):
    """What a save did."""

    file: str | None
    validation: ValidationOut
    status: ReloadStatusOut
    etag: str | None = None
    """The version written by a whole-file save (also its ``ETag`` header), for the next one."""


class EnabledIn(BaseModel):
    """Switch a rule on or off."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool


def _validation(rules: RuleSet) -> ValidationOut:
    return ValidationOut(
        ok=True, errors=[], rules=len(rules.rules), zones=len(rules.zones), lines=len(rules.lines)
    )


def recorder(dashboard: Dashboard, actor: str, client: str, action: str) -> Record:
    """The audit record of a rule-file change, written before the change is put in place.

    Recording first (as confirmed drafts do): an audit log that cannot be written refuses the
    change (503) instead of leaving it live and unrecorded while the admin is told it failed.
    So the record holds the file's new hash, not the generation it will produce.
    """

    return _AuditRecord(dashboard, actor, client, action)


class _AuditRecord:
    """:func:`recorder`'s record: ``ACTION`` before the change, ``ACTION.failed`` if the file
    could not be replaced or removed after it (a rename or unlink refused by the OS)."""

    def __init__(self, dashboard: Dashboard, actor: str, client: str, action: str) -> None:
        self._dashboard, self._actor, self._client, self._action = dashboard, actor, client, action

    def __call__(self, name: str, text: str | None) -> None:
        detail = {"removed": True} if text is None else {"file_sha256": sha256_text(text)}
        self._dashboard.auth.audit(
            self._action, actor=self._actor, subject=name, detail=detail, client=self._client
        )

    def failed(self, name: str, error: OSError) -> None:
        self._dashboard.auth.audit(
            f"{self._action}.failed",
            actor=self._actor,
            subject=name,
            detail={"error": str(error)},
            client=self._client,
        )


def saved(dashboard: Dashboard, result: SaveResult) -> SaveOut:
    """Reload after a (recorded) save and say what happened."""
    status = dashboard.rules.reload_rules()
    name = result.file.name if result.file is not None else None
    return SaveOut(
        file=name, validation=_validation(result.rules), status=ReloadStatusOut.of(status)
    )


@router.get("", response_model=RulesOut, summary="Rules in force")
async def rules(_user: Viewer, dashboard: DashboardDep) -> RulesOut:
    """Every rule in force, explained, with the reload state."""
    generation = dashboard.rules.rule_generation()
    site = dashboard.site().config
    rule_set = generation.rules
    from safewatch.config.ruleset import rule_zone_ids

    return RulesOut(
        generation=generation.number,
        files=[f.name for f in rule_set.files],
        rules=[
            RuleOut(
                id=r.id,
                kind=r.kind,
                enabled=r.enabled,
                severity=str(r.severity),
                description=r.description,
                cameras=list(r.cameras),
                zones=list(rule_zone_ids(r)),
                explanation=explain_rule(r, rule_set, site),
            )
            for r in rule_set.rules
        ],
        status=ReloadStatusOut.of(dashboard.rules.rule_status()),
    )


@router.get("/status", response_model=ReloadStatusOut, summary="Reload state")
async def status(_user: Viewer, dashboard: DashboardDep) -> ReloadStatusOut:
    """The latest reload: generation in force, and why the files were refused, if they were."""
    return ReloadStatusOut.of(dashboard.rules.rule_status())


@router.post("/reload", response_model=ReloadStatusOut, summary="Reload the rule files now")
async def reload(request: Request, user: Admin, dashboard: DashboardDep) -> ReloadStatusOut:
    """Reload now (the watcher also reloads on every change)."""
    result = await anyio.to_thread.run_sync(dashboard.rules.reload_rules)
    dashboard.auth.audit("rules.reload", actor=user.username, client=client_of(request))
    return ReloadStatusOut.of(result)


class AcknowledgeIn(BaseModel):
    """Rules whose removal an admin accepts (the ids flagged as dropped, as they saw them)."""

    model_config = ConfigDict(extra="forbid")
    rules: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]] = Field(
        min_length=1, max_length=1000
    )


@router.post(
    "/dropped/acknowledge",
    response_model=ReloadStatusOut,
    summary="Acknowledge the removal of dropped rules",
)
async def acknowledge_dropped(
    body: AcknowledgeIn, request: Request, user: Admin, dashboard: DashboardDep
) -> ReloadStatusOut:
    """Accept that rules dropped from the set in force are gone on purpose.

    Until then they are flagged on the Rules page and ``/readyz`` is ``degraded`` (a rule
    removed by mistake is protection lost). The decision goes to the audit log with the rule
    ids and the generation in force. 409 if a rule named is not flagged as dropped (it came
    back, or a newer drop is not what the admin saw).
    """
    generation = dashboard.rules.rule_status().generation
    try:
        result = await anyio.to_thread.run_sync(dashboard.rules.acknowledge_dropped, body.rules)
    except ValueError as error:
        raise ApiError(409, "conflict", str(error)) from None
    dashboard.auth.audit(
        "rules.acknowledge_dropped",
        actor=user.username,
        subject=", ".join(body.rules),
        detail={"rules": body.rules, "generation": generation},
        client=client_of(request),
    )
    return ReloadStatusOut.of(result)


@router.get("/files", response_model=list[str], summary="Rule files")
async def files(_user: Viewer, dashboard: DashboardDep) -> list[str]:
    """Rule file names, in load order."""
    return rule_files(dashboard).names()


@router.get("/files/{name}", response_model=RuleFileOut, summary="Read a rule file")
async def read_file(
    name: FileName, response: Response, _user: Viewer, dashboard: DashboardDep
) -> RuleFileOut:
    """A rule file's YAML, with its version in ``ETag`` to send back as ``If-Match``."""
    text = await anyio.to_thread.run_sync(rule_files(dashboard).read, name)
    response.headers["ETag"] = etag(text)
    return RuleFileOut(name=name, text=text, etag=etag(text))


@router.post("/files/{name}/validate", response_model=ValidationOut, summary="Validate a rule file")
async def validate(
    name: FileName, body: RuleFileIn, _user: Viewer, dashboard: DashboardDep
) -> ValidationOut:
    """Validate the whole set as it would be with this text; nothing is written."""
    try:
        rule_set = await anyio.to_thread.run_sync(rule_files(dashboard).validate, name, body.text)
    except ConfigError as exc:
        return ValidationOut(ok=False, errors=config_details(exc), rules=0, zones=0, lines=0)
    return _validation(rule_set)


@router.put("/files/{name}", response_model=SaveOut, summary="Save a rule file")
async def save_file(
    name: FileName,
    body: RuleFileIn,
    request: Request,
    response: Response,
    user: Admin,
    dashboard: DashboardDep,
    if_match: IfMatch = None,
) -> SaveOut:
    """Validate the whole set and, only if valid, write the file and reload (422 otherwise).

    With ``If-Match`` (the ``ETag`` of the text the edit started from), a file changed since is
    refused with 409 and left as it is; without it the save overwrites whatever is there.
    """

    def run() -> SaveOut:
        record = recorder(dashboard, user.username, client_of(request), "rules.save")
        files = rule_files(dashboard)
        out = saved(dashboard, files.save(name, body.text, record=record, if_match=if_match))
        out.etag = response.headers["ETag"] = etag(body.text)
        return out

    return await anyio.to_thread.run_sync(run)


@router.delete("/files/{name}", response_model=SaveOut, summary="Remove a rule file")
async def delete_file(
    name: FileName,
    request: Request,
    user: Admin,
    dashboard: DashboardDep,
    if_match: IfMatch = None,
) -> SaveOut:
    """Remove a file if the remaining set stays valid (409 if ``If-Match`` names another
    version)."""

    def run() -> SaveOut:
        record = recorder(dashboard, user.username, client_of(request), "rules.delete")
        files = rule_files(dashboard)
        out = saved(dashboard, files.delete(name, record=record, if_match=if_match))
        out.file = name
        return out

    return await anyio.to_thread.run_sync(run)


@router.put("/{rule_id}/enabled", response_model=SaveOut, summary="Switch a rule on or off")
async def set_enabled(
    rule_id: RuleId, body: EnabledIn, request: Request, user: Admin, dashboard: DashboardDep
) -> SaveOut:
    """Write ``enabled: false`` into the rule (or remove it) and reload."""

    def run() -> SaveOut:
        action = "rules.enable" if body.enabled else "rules.disable"
        record = recorder(dashboard, user.username, client_of(request), action)
        return saved(
            dashboard, rule_files(dashboard).set_enabled(rule_id, body.enabled, record=record)
        )

    return await anyio.to_thread.run_sync(run)
