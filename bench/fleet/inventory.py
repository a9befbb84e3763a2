"""The lab's inventory: a TOML file of `[[hosts]]` tables, checked before anything connects.

    [[hosts]]
    name = "pi5-a"                       # letters, digits, '.', '_' and '-': it names files and folders
    host = "192.168.1.40"
    port = 22                            # optional
    user = "bench"                       # optional: the controller's user
    identity_file = "~/.ssh/lab_ed25519" # optional: the ssh agent's and ~/.ssh's default keys otherwise
    known_hosts = "~/.ssh/known_hosts"   # optional; host keys are pinned, an unknown key is refused ...
    accept_new_host_key = false          # ... unless this is true: the key seen first is written to known_hosts
    python = "python3"                   # the device's interpreter (a path, or a command on its PATH)
    work_dir = "~/.tritbench"            # where tritbench installs, runs and spools on the device
    labels = { arch = "aarch64", board = "Raspberry Pi 5" }
    max_threads = 4                      # thread counts above it are not run on this host
    env = { LLAMA_CPP_LIB_PATH = "/opt/llama/lib" }   # extra environment for the device's run
    llama_wheel = "wheels/llama_cpp_python-0.3.16-cp311-cp311-linux_aarch64.whl"  # optional

Relative paths are relative to the inventory file. Every error names the file, the host and the field."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tritbench.errors import ConfigError, read_user_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# Environment names a shell would accept; values are always quoted when sent.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = {"name", "host", "port", "user", "identity_file", "known_hosts", "accept_new_host_key", "python",
           "work_dir", "labels", "max_threads", "env", "llama_wheel"}


@dataclass(frozen=True)
class Host:
    name: str
    host: str
    port: int = 22
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    accept_new_host_key: bool = False
    python: str = "python3"
    work_dir: str = "~/.tritbench"
    labels: dict[str, str] = field(default_factory=dict)
    max_threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    llama_wheel: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def _str(where: str, key: str, value) -> str:
    if not isinstance(value, str) or not value or "\0" in value or "\n" in value:
        raise ConfigError(f"{where}: '{key}' must be a non-empty one-line string, got {value!r}")
    return value


def _path(base: Path, where: str, key: str, value) -> Path:
    p = Path(_str(where, key, value)).expanduser()
    return p if p.is_absolute() else (base / p)


def _str_table(where: str, key: str, value) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a table of strings")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"{where}: '{key}.{k}' must be a string, got {v!r}")
        out[str(k)] = _str(where, f"{key}.{k}", str(v))
    return out


def parse_host(data: dict, base: Path, where: str) -> Host:
    """One `[[hosts]]` table, checked; `base` is the folder relative paths are read from."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: each [[hosts]] entry must be a table")
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field '{sorted(unknown)[0]}' (known: {', '.join(sorted(_FIELDS))})")
    for key in ("name", "host"):
        if key not in data:
            raise ConfigError(f"{where}: '{key}' is required")
    name = _str(where, "name", data["name"])
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: name '{name}' may hold only letters, digits, '.', '_' and '-' (up to 63)")
    where = f"{where} ({name})"
    host = _str(where, "host", data["host"])
    if host.startswith("-") or any(c.isspace() for c in host):
        raise ConfigError(f"{where}: 'host' is not a host name or address: {host!r}")
    port = data.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}: 'port' must be an integer 1-65535, got {port!r}")
    max_threads = data.get("max_threads")
    if max_threads is not None and (isinstance(max_threads, bool) or not isinstance(max_threads, int)
                                    or max_threads < 1):
        raise ConfigError(f"{where}: 'max_threads' must be a positive integer, got {max_threads!r}")
    accept = data.get("accept_new_host_key", False)
    if not isinstance(accept, bool):
        raise ConfigError(f"{where}: 'accept_new_host_key' must be true or false")
    env = _str_table(where, "env", data.get("env", {}))
    for k in env:
        if not ENV_NAME.fullmatch(k):
            raise ConfigError(f"{where}: 'env' name {k!r} is not an environment variable name")
    opt_path = {k: _path(base, where, k, data[k]) if k in data else None
                for k in ("identity_file", "known_hosts", "llama_wheel")}
    for k in ("identity_file", "llama_wheel"):
        if opt_path[k] is not None and not opt_path[k].is_file():
            raise ConfigError(f"{where}: {k} not found: {opt_path[k]}")
    return Host(
        name=name, host=host, port=port, user=_str(where, "user", data["user"]) if "user" in data else None,
        accept_new_host_key=accept, python=_str(where, "python", data.get("python", "python3")),
        work_dir=_str(where, "work_dir", data.get("work_dir", "~/.tritbench")),
        labels=_str_table(where, "labels", data.get("labels", {})), max_threads=max_threads, env=env, **opt_path,
    )


def parse_inventory(text: str, base: Path, where: str) -> list[Host]:
    """Hosts of an inventory's TOML text; names must be unique."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    extra = set(data) - {"hosts"}
    if extra:
        raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}' (an inventory holds [[hosts]] tables)")
    items = data.get("hosts")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: no [[hosts]] tables")
    hosts = [parse_host(item, base, f"{where}: hosts[{i}]") for i, item in enumerate(items)]
    seen: set[str] = set()
    for h in hosts:
        if h.name in seen:
            raise ConfigError(f"{where}: two hosts are named '{h.name}'")
        seen.add(h.name)
    return hosts


def load_inventory(path: Path) -> list[Host]:
    path = Path(path)
    return parse_inventory(read_user_text(path, "inventory"), path.resolve().parent, str(path))
