"""Settings of the regulator console (validated; unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config import StrictModel

Grade = Literal["A", "B", "C", "D"]


class WebhookConfig(StrictModel):
    """One place immediate alarms are pushed to."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Name of the target; delivery state is kept per name.",
    )
    url: str = Field(
        pattern=r"^https?://", max_length=2048, description="URL the alarm is POSTed to."
    )
    format: Literal["json", "dingtalk", "wecom"] = Field(
        default="json",
        description="json: the alert as a JSON object; dingtalk / wecom: a group robot's text "
        'message {"msgtype": "text", "text": {"content": ...}} (its errcode must be 0).',
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per attempt, in s.")
    max_attempts: int = Field(
        default=12, ge=1, le=1000, description="Attempts before the push is parked as failed."
    )
    backoff_initial_s: float = Field(
        default=2.0, gt=0, le=3600, description="Wait after the first failure, in s."
    )
    backoff_max_s: float = Field(
        default=300.0, gt=0, le=86_400, description="Longest wait between attempts, in s."
    )


class RegulatorConsoleConfig(StrictModel):
    """The regulator console served by the reference receiver under ``/regulator/``."""

    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="Where immediate alarms are pushed (none: no push)."
    )
    grades: dict[str, Grade] = Field(
        default_factory=dict,
        description="Enterprise grade per gateway (A best … D worst); it scales the risk "
        "score and sets the least frequent inspection allowed.",
    )
    session_idle_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="A session ends after this long unused."
    )
    max_failed_logins: int = Field(
        default=5, ge=1, le=100, description="Failed logins per account within lockout_s."
    )
    lockout_s: float = Field(
        default=300.0, gt=0, le=86_400, description="The window of max_failed_logins, in s."
    )
    max_attachment_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest rectification attachment accepted (larger: 413).",
    )
    offline_after_s: float = Field(
        default=900.0, gt=0, description="A gateway not heard from this long counts as offline."
    )
    evidence_dir: str | None = Field(
        default=None,
        description="Folder of evidence snapshots named by their SHA-256 (default: "
        "'evidence' in the extensions' data folder).",
    )
    page_size: int = Field(default=50, ge=5, le=500, description="Alerts per list page.")
