"""What ``run`` needs besides a valid file, checked before anything starts.

A file can be valid field by field and still be one the gateway cannot run on: a standard
profile that does not exist or rejects its parameters, a quantity or unit the profile does
not know, a time zone typo, a credential variable that is not set, a certificate, key or
model that is not there. :func:`prepare` loads the file and builds what ``run`` builds
before its first I/O; ``config check``, ``run`` and a reload all call it, so they refuse
the same files with the same lines (a :class:`~edge.app.config_file.ConfigError`).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import ssl
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud_sync.config import HttpsUplinkConfig, MqttUplinkConfig
from cloud_sync.errors import IdentityError
from cloud_sync.identity import load_or_create_key, signed_record_count
from cloud_sync.sync import key_path
from edge.app.config import GatewayConfig
from edge.app.config_file import (
    ConfigError,
    ConfigProblem,
    parse_config,
    read_text,
    resolve_paths,
    with_lines,
)
from edge.app.env_secrets import missing_secrets
from edge.errors import SetupError
from edge.readonly import connect_read_only
from edge.schema import SCHEMA_VERSION
from edge.tls import TLSConfig, client_ssl_context
from sensors.config import SensorConfig
from sensors.errors import ProfileError
from sensors.monitor import build_monitors
from sensors.standards import Profile, load_profiles

Problem = tuple[str, str]
"""(field path, reason)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UsableConfig:
    """A config file that passed every check ``run`` makes, with the text that was checked."""

    path: Path
    text: str
    config: GatewayConfig


def prepare(path: Path | str) -> UsableConfig:
    """The one validation of ``config check`` and ``run``: load, validate, check usable.

    Raises :class:`ConfigError` (a SetupError) naming the file and, for each problem, the
    line (where the file has one), the field and the reason.
    """
    path = Path(path)
    return prepare_text(path, read_text(path))


def prepare_text(path: Path, text: str) -> UsableConfig:
    """:func:`prepare` for ``text`` meant to become the file at ``path`` (not written yet).

    The console checks an edit with it before writing the file, so a refused edit never
    reaches the file, and its problems name the file's lines as ``config check`` would.
    """
    config = resolve_paths(parse_config(text, file=path), path)
    require_camera_stack(config)
    try:
        check_usable(config, file=path)
    except ConfigError as exc:
        raise with_lines(exc, text) from None
    return UsableConfig(path=path, text=text, config=config)


CAMERA_STACK = ("numpy", "cv2", "onnxruntime")
"""The modules of the ``vision`` extra (``pip install 'offsite-edge[vision]'``)."""


class CameraStackMissingError(SetupError):
    """The config has a ``vision`` section but the ``vision`` extra is not installed."""


def require_camera_stack(config: GatewayConfig) -> None:
    """Raise :class:`CameraStackMissingError` (one line) when cameras cannot run here.

    Sensor-only installs leave the camera stack out; a config that needs it must say so
    before anything starts, not as an ImportError from the vision task.
    """
    if config.vision is None:
        return
    # find_spec looks the modules up without importing them (OpenCV alone takes seconds).
    if any(importlib.util.find_spec(name) is None for name in CAMERA_STACK):
        raise CameraStackMissingError(
            "vision: cameras are configured but the camera stack is not installed: "
            "pip install 'offsite-edge[vision]'"
        )


def check_usable(config: GatewayConfig, *, file: Path | str = "<config>") -> None:
    """Raise :class:`ConfigError` with every reason ``run`` would refuse ``config``."""
    problems = problems_of(config)
    if problems:
        raise ConfigError(file, problems)


def problems_of(config: GatewayConfig) -> list[ConfigProblem]:
    """Every reason ``run`` would refuse ``config`` before it starts (empty: it can run)."""
    found = [*_standards(config), *_files(config), *_store(config)]
    return [*(ConfigProblem(field=f, reason=r) for f, r in found), *missing_secrets(config)]


def _standards(config: GatewayConfig) -> list[Problem]:
    profiles = load_profiles()
    out: list[Problem] = []
    for index, sensor in enumerate(config.sensors):
        where = f"sensors[{index}].standard"
        ref = sensor.standard
        if ref is not None:
            try:
                ZoneInfo(ref.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                reason = (
                    f"sensor {sensor.id}: unknown time zone {ref.timezone!r}"
                    " (an IANA name such as Asia/Shanghai)"
                )
                out.append((f"{where}.timezone", reason))
                continue
        try:
            # Exactly what the gateway builds (edge.app.gateway.build_sensor_monitors).
            build_monitors([sensor], profiles, site=config.site.name)
        except ProfileError as exc:
            out.append((where, str(exc)))
            continue
        if ref is not None:
            out.extend(_quantity_map(sensor, profiles[ref.profile], where))
    return out


def _quantity_map(sensor: SensorConfig, profile: Profile, where: str) -> list[Problem]:
    """A mapping that names no reading or no profile input would silently judge nothing."""
    assert sensor.standard is not None
    readings = sorted(q.name for q in sensor.quantities)
    inputs = {spec.input or name for name, spec in profile.quantities.items()}
    inputs |= {spec.inlet for spec in profile.quantities.values() if spec.inlet}
    # fume airflow readings (sensors.fume) are inputs too
    inputs |= {
        a for spec in profile.quantities.values() for a in (spec.airflow, spec.inlet_airflow) if a
    }
    out: list[Problem] = []
    for reading, name in sensor.standard.quantity_map.items():
        field = f"{where}.quantity_map.{reading}"
        if reading not in readings:
            out.append(
                (field, f"sensor {sensor.id}: {reading!r} is not one of its quantities {readings}")
            )
        elif name not in inputs:
            known = f"it knows {sorted(inputs)}"
            out.append(
                (
                    field,
                    f"sensor {sensor.id}: {profile.name} has no quantity {name!r}; {known}",
                )
            )
    return out


def _tls_sections(config: GatewayConfig) -> list[tuple[str, TLSConfig]]:
    """The TLS settings ``run`` builds a context from (as the ingest and uplinks do)."""
    sections = [("broker.tls", config.broker.tls)] if config.broker.tls.enabled else []
    for index, uplink in enumerate(config.cloud.uplinks if config.cloud else []):
        used = (isinstance(uplink, MqttUplinkConfig) and uplink.tls.enabled) or (
            isinstance(uplink, HttpsUplinkConfig) and uplink.url.startswith("https://")
        )
        if used:
            assert isinstance(uplink, MqttUplinkConfig | HttpsUplinkConfig)
            sections.append((f"cloud.uplinks[{index}].tls", uplink.tls))
    return sections


def _files(config: GatewayConfig) -> list[Problem]:
    out: list[Problem] = []
    for where, tls in _tls_sections(config):
        missing = [
            (f"{where}.{field}", f"file {path} does not exist")
            for field in ("ca_file", "cert_file", "key_file")
            if (path := getattr(tls, field)) is not None and not Path(path).is_file()
        ]
        out.extend(missing)
        if not missing:
            try:
                client_ssl_context(tls)
            except (OSError, ssl.SSLError, ValueError) as exc:
                out.append((where, f"cannot use the certificate or key: {exc}"))
    if config.cloud is not None:
        key, db = key_path(config.cloud, config.store.path), config.store.path
        # A missing key is created at the first run (unless records were signed with it);
        # one that exists must be usable. Checked without creating anything.
        try:
            if key.exists():
                load_or_create_key(key)
            elif db.exists() and signed_record_count(db):
                load_or_create_key(key, db_path=db, reconcile=False)  # raises MissingKeyError
        except (IdentityError, OSError) as exc:
            out.append(("cloud.key_file", str(exc)))
    if config.vision is not None:
        model = Path(config.vision.detector.model_path)
        if not model.is_file():
            out.append(("vision.detector.model_path", f"model file {model} does not exist"))
    return out


def _store(config: GatewayConfig) -> list[Problem]:
    """A database written by a newer gateway would be refused when the store opens."""
    db = config.store.path
    try:
        with closing(connect_read_only(db)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except (FileNotFoundError, sqlite3.Error):
        return []  # none yet (created at the first run), or not readable by this user
    if row is not None and str(row[0]).isdigit() and int(row[0]) > SCHEMA_VERSION:
        reason = (
            f"database {db} has schema {row[0]}, newer than this gateway's {SCHEMA_VERSION}: "
            "a newer offsite-edge wrote it; upgrade, or move the database aside"
        )
        return [("store.path", reason)]
    return []
