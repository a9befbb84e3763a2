"""One SSH connection to a device (asyncssh), with the lab's rules: key-only auth, pinned host keys, keepalive,
every command quoted, and every failure as one line naming the host."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import asyncssh

from tritbench.errors import BenchError
from tritbench.fleet.inventory import Host

# A peer that stops answering (a frozen board, a cut link) is declared dead after about 2 x 10 s. Keepalives go
# only when nothing came from the peer for that long: the controller's polls (every 5 s) usually make them moot.
KEEPALIVE_S, KEEPALIVE_MAX = 10, 2
CONNECT_TIMEOUT_S = 15


class HostError(BenchError):
    """Something about one host: printed as `host NAME (ADDRESS): reason`."""

    def __init__(self, host: Host, reason: str):
        super().__init__(f"host {host.name} ({host.address}): {reason}")
        self.host, self.reason = host, reason


def quote(argv: list[str]) -> str:
    """A command line for the device's shell in which every word is one literal word."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return ("its host key is not in known_hosts (pin it with ssh-keyscan, or set accept_new_host_key = true "
                f"to trust the first one seen): {exc.reason}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return "authentication failed: the key was refused (key-only auth; check identity_file and user)"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected: {exc.reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no sshd listening on that port?)"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


class Device:
    """An open session to one host; `connect()` again after a drop."""

    def __init__(self, host: Host):
        self.host = host
        self.conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    async def connect(self) -> None:
        h = self.host
        known = h.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        kwargs = dict(port=h.port, username=h.user, keepalive_interval=KEEPALIVE_S,
                      keepalive_count_max=KEEPALIVE_MAX, connect_timeout=CONNECT_TIMEOUT_S,
                      preferred_auth="publickey", known_hosts=str(known) if known.exists() else ())
        if h.identity_file:  # that key only: not whatever an ssh agent holds
            kwargs.update(client_keys=[str(h.identity_file)], agent_path=None)
        try:
            try:
                self.conn = await asyncssh.connect(h.host, **kwargs)
            except asyncssh.HostKeyNotVerifiable:
                if not h.accept_new_host_key or _known_entry(known, h):
                    raise  # a key that changed is never accepted silently
                self.conn = await asyncssh.connect(h.host, **{**kwargs, "known_hosts": None})
                _pin(known, h, self.conn.get_server_host_key())
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise HostError(h, _reason(exc)) from None
        self._sftp = None

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            try:
                await asyncio.wait_for(self.conn.wait_closed(), 5)
            except (asyncio.TimeoutError, OSError, asyncssh.Error):
                pass
            self.conn = None
            self._sftp = None

    def abort(self) -> None:
        """Drop the connection now (the peer may be frozen: do not wait for it)."""
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
            self._sftp = None

    async def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120,
                  check: bool = True) -> asyncssh.SSHCompletedProcess:
        """Run `argv` (quoted) on the device; with `check`, a non-zero exit is a HostError with its last line."""
        return await self.shell(quote(argv), input=input, timeout=timeout, check=check)

    async def shell(self, command: str, *, input: str | None = None, timeout: float = 120,
                    check: bool = True) -> asyncssh.SSHCompletedProcess:
        """Run a shell command line built by the caller from `quote()`d words."""
        if self.conn is None:
            raise HostError(self.host, "not connected")
        try:
            proc = await self.conn.run(command, input=input, timeout=timeout, check=False)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise HostError(self.host, _reason(exc)) from None
        if check and proc.exit_status != 0:
            text = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise HostError(self.host, f"`{command[:80]}` exited {proc.exit_status}: "
                                       f"{text[-1] if text else 'no output'}")
        return proc

    async def sftp(self) -> asyncssh.SFTPClient:
        if self.conn is None:
            raise HostError(self.host, "not connected")
        if self._sftp is None:
            try:
                self._sftp = await self.conn.start_sftp_client()
            except (OSError, asyncssh.Error) as exc:
                raise HostError(self.host, f"SFTP: {_reason(exc)}") from None
        return self._sftp


def _known_name(h: Host) -> str:
    return h.host if h.port == 22 else f"[{h.host}]:{h.port}"


def _known_entry(path: Path, h: Host) -> bool:
    """Does known_hosts already hold a key for this host (then a different key is an attack or a reinstall)?"""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    name = _known_name(h)
    return any(name in line.split(" ", 1)[0].split(",") for line in lines if line and not line.startswith("#"))


def _pin(path: Path, h: Host, key: asyncssh.SSHKey | None) -> None:
    if key is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{_known_name(h)} {key.export_public_key('openssh').decode().strip()}\n")
