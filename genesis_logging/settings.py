"""Connection settings for ClickHouse: options, URL and environment, validated once.

Precedence for each setting: the keyword argument, then the URL (argument or
``CLICKHOUSE_URL``), then the individual environment variable, then the default.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigurationError

__all__ = ["ConnectionSettings"]

_SCHEMES = {"clickhouse": False, "clickhouses": True, "clickhouse+native": False, "tcp": False}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_COMPRESSION_PACKAGES = {
    "lz4": ("lz4", "clickhouse_cityhash"),
    "zstd": ("zstd", "clickhouse_cityhash"),
}


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be a boolean (true/false), got {value!r}")


def _parse_number(name: str, value: object, *, integer: bool = False) -> float:
    try:
        number = int(str(value)) if integer else float(str(value))
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if number <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return number


_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]+")


def _check_host(value: object) -> str:
    """A host name or address; a URL here would carry its password into every message."""
    host = str(value).strip()
    if not _HOST.fullmatch(host):
        raise ConfigurationError(
            "host must be a host name or address; for a URL use url= or CLICKHOUSE_URL"
        )
    return host


def _check_alt_hosts(value: object, default_port: int) -> str | None:
    """``host:port,host:port`` as clickhouse-driver reads it, each host checked like
    ``host``; a missing port is the scheme's default. The value is never echoed: a
    mistyped URL here would carry its password into the message."""
    text = str(value).strip()
    if not text:
        return None
    hosts = []
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item.partition("]")
            host += "]"
            port_text = rest[1:] if rest.startswith(":") else rest
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        else:
            host, port_text = item, ""
        if not _HOST.fullmatch(host) or (":" in host.strip("[]") and not host.startswith("[")):
            raise ConfigurationError(
                f"alt_hosts item {position} must be host:port (an IPv6 address in brackets), "
                "items separated by commas"
            )
        port = default_port
        if port_text or item.endswith(":"):
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ConfigurationError(
                    f"alt_hosts item {position} must end with a port between 1 and 65535"
                )
            port = int(port_text)
        hosts.append(f"{host}:{port}")
    return ",".join(hosts)


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to reach ClickHouse over the native protocol.

    The password is kept out of ``repr`` and of :meth:`redacted_url`.
    """

    host: str = "localhost"
    port: int = 9000
    user: str = "default"
    password: str = field(default="", repr=False)
    database: str = "genesis"
    secure: bool = False
    verify: bool = True
    ca_certs: str | None = None
    connect_timeout: float = 5.0
    send_receive_timeout: float = 30.0
    compression: str | None = None
    alt_hosts: str | None = None
    round_robin: bool = False

    @classmethod
    def resolve(
        cls, *, environ: Mapping[str, str] | None = None, **options: object
    ) -> ConnectionSettings:
        """Combine options, URL and environment into validated settings.

        Args:
            environ: the environment to read (default ``os.environ``).
            options: ``url`` and any field of these settings; ``None`` means "not given".

        Raises:
            ConfigurationError: an unknown option, a malformed URL, port, timeout or
                boolean, an unknown compression, or one whose package is not installed.
        """
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ConfigurationError(f"unknown connection option {unknown[0]!r}")
        env = os.environ if environ is None else environ
        url = options.pop("url", None)
        from_url = _parse_url(str(url) if url is not None else env.get("CLICKHOUSE_URL"))
        from_env: dict[str, Any] = {
            "host": env.get("CLICKHOUSE_HOST"),
            "port": env.get("CLICKHOUSE_PORT"),
            "user": env.get("CLICKHOUSE_USER"),
            "password": env.get("CLICKHOUSE_PASSWORD"),
            "database": env.get("CLICKHOUSE_DATABASE"),
            "secure": env.get("CLICKHOUSE_SECURE"),
        }
        given = options
        merged: dict[str, Any] = {}
        for layer in (from_env, from_url, given):
            merged.update({k: v for k, v in layer.items() if v is not None and v != ""})
        return cls._validated(merged)

    @classmethod
    def _validated(cls, values: dict[str, Any]) -> ConnectionSettings:
        settings = cls()
        changes: dict[str, Any] = {}
        if "host" in values:
            changes["host"] = _check_host(values["host"])
        if "user" in values:
            changes["user"] = str(values["user"])
        if "password" in values:
            changes["password"] = str(values["password"])
        if "database" in values:
            changes["database"] = str(values["database"])
        if "ca_certs" in values:
            changes["ca_certs"] = str(values["ca_certs"])
        secure = _parse_bool("secure", values["secure"]) if "secure" in values else False
        changes["secure"] = secure
        if "verify" in values:
            changes["verify"] = _parse_bool("verify", values["verify"])
        if "port" in values:
            port = int(_parse_number("port", values["port"], integer=True))
            if port > 65535:
                raise ConfigurationError(f"port must be at most 65535, got {port}")
            changes["port"] = port
        else:
            changes["port"] = 9440 if secure else 9000
        for name in ("connect_timeout", "send_receive_timeout"):
            if name in values:
                changes[name] = _parse_number(name, values[name])
        if "compression" in values:
            changes["compression"] = _check_compression(values["compression"])
        if "alt_hosts" in values:
            changes["alt_hosts"] = _check_alt_hosts(values["alt_hosts"], 9440 if secure else 9000)
        if "round_robin" in values:
            changes["round_robin"] = _parse_bool("round_robin", values["round_robin"])
        return replace(settings, **changes)

    @property
    def hosts(self) -> list[str]:
        """Every ``host:port`` to try, in order: ``host`` first, then ``alt_hosts``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return [f"{host}:{self.port}", *(self.alt_hosts.split(",") if self.alt_hosts else [])]

    def redacted_url(self) -> str:
        """The URL of these settings with the password left out, for messages."""
        scheme = "clickhouses" if self.secure else "clickhouse"
        url = f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}"
        query = [f"alt_hosts={self.alt_hosts}"] if self.alt_hosts else []
        if self.round_robin:
            query.append("round_robin=true")
        return url + ("?" + "&".join(query) if query else "")

    def scrub(self, text: str) -> str:
        """Remove the password from ``text`` (error messages of third-party code)."""
        if self.password and self.password in text:
            return text.replace(self.password, "***")
        return text

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``clickhouse_driver.Client``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "secure": self.secure,
            "verify": self.verify,
            "connect_timeout": self.connect_timeout,
            "send_receive_timeout": self.send_receive_timeout,
            "sync_request_timeout": self.send_receive_timeout,
            "compression": self.compression or False,
            "client_name": "genesis-logging",
        }
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if self.alt_hosts:
            kwargs["alt_hosts"] = self.alt_hosts
            if self.round_robin:
                kwargs["round_robin"] = True
        return kwargs


def _check_compression(value: object) -> str | None:
    if value is None or value is False or str(value).strip().lower() in ("", "none", "false"):
        return None
    name = str(value).strip().lower()
    if name not in _COMPRESSION_PACKAGES:
        raise ConfigurationError(f"compression must be None, 'lz4' or 'zstd', got {value!r}")
    missing = [pkg for pkg in _COMPRESSION_PACKAGES[name] if importlib.util.find_spec(pkg) is None]
    if missing:
        raise ConfigurationError(
            f"compression {name!r} needs the packages {', '.join(missing)}: "
            f"pip install 'genesis-logging[{name}]'"
        )
    return name


def _parse_url(url: str | None) -> dict[str, Any]:
    if not url:
        return {}
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            "malformed ClickHouse URL (check the port; characters such as ?, #, / and @ in "
            "the user or password must be percent-encoded)"
        ) from None
    if parts.fragment or url.endswith("#"):
        raise ConfigurationError(
            "malformed ClickHouse URL: it has a '#…' part, which no ClickHouse URL has "
            "(a # in the user or password must be percent-encoded as %23)"
        )
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"ClickHouse URL scheme must be one of {sorted(_SCHEMES)}, got {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ConfigurationError("ClickHouse URL has no host")
    values: dict[str, Any] = {"host": parts.hostname, "port": port}
    if _SCHEMES[parts.scheme]:
        values["secure"] = True
    if parts.username:
        values["user"] = unquote(parts.username)
    if parts.password:
        values["password"] = unquote(parts.password)
    database = parts.path.strip("/")
    if database:
        if "/" in database:
            raise ConfigurationError("ClickHouse URL path must be a single database name")
        values["database"] = unquote(database)
    for key, items in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in (
            "secure",
            "verify",
            "ca_certs",
            "compression",
            "connect_timeout",
            "send_receive_timeout",
            "alt_hosts",
            "round_robin",
        ):
            shown = repr(key) if key.isidentifier() else "(not a parameter name)"
            raise ConfigurationError(
                f"unknown ClickHouse URL parameter {shown}; characters such as ?, # and / in "
                "the user or password must be percent-encoded"
            )
        values[key] = items[-1]
    return values


_OPTIONS = frozenset({"url", *(f.name for f in fields(ConnectionSettings))})
