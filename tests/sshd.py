"""Real OpenSSH servers on loopback for the fleet tests: each a "host" with its own port, host key, work dir and
machine identity, key-only auth and SFTP; started by the tests and stopped by the pid in their PidFile.

Debian's openssh-server is installed when missing and we are root with apt-get; otherwise the tests skip with the
install line (and fail under CI=true)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def ensure_sshd() -> str | None:
    """None when sshd can run here, else why not (one line with the fix)."""
    if not Path(SSHD).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "openssh-server"], capture_output=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not Path(SSHD).exists():
        return "OpenSSH server is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "the fleet tests start sshd as root (its privilege separation needs it)"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeHost:
    name: str
    port: int
    root: Path  # host key, config, log, pid file
    work_dir: Path

    @property
    def pid(self) -> int | None:
        try:
            return int((self.root / "sshd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener): SIGSTOP one to freeze a session."""
        pid = self.pid
        if pid is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        pid = self.pid
        for child in self.session_pids():
            _kill(child, signal.SIGCONT)
            _kill(child, signal.SIGKILL)
        if pid:
            _kill(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Lab:
    """A controller key, a known_hosts file, and sshd instances added with `add()`."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.touch()
        self.hosts: list[FakeHost] = []

    def add(self, name: str, pin: bool = True) -> FakeHost:
        hroot = self.root / name
        hroot.mkdir()
        hkey = hroot / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hkey)], check=True)
        shutil.copy(self.key.with_suffix(".pub"), hroot / "authorized_keys")
        port = free_port()
        cfg = hroot / "sshd_config"
        cfg.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {hkey}", f"PidFile {hroot / 'sshd.pid'}",
            f"AuthorizedKeysFile {hroot / 'authorized_keys'}", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "MaxStartups 50",
            "MaxSessions 50", "",
        ]))
        _start(hroot)
        if pin:
            pub = (hkey.with_suffix(".pub")).read_text().split()
            with open(self.known_hosts, "a") as fh:
                fh.write(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
        host = FakeHost(name, port, hroot, self.root / "work" / name)
        self.hosts.append(host)
        return host

    def inventory(self, hosts: list[FakeHost] | None = None, python: str | None = None, extra: str = "",
                  env: dict[str, str] | None = None) -> str:
        """The TOML inventory of `hosts` (default all), each running `python` with `env`."""
        blocks = []
        for h in hosts or self.hosts:
            envs = ", ".join(f'{k} = "{v}"' for k, v in (env or {}).items())
            blocks.append("\n".join([
                "[[hosts]]", f'name = "{h.name}"', 'host = "127.0.0.1"', f"port = {h.port}", 'user = "root"',
                f'identity_file = "{self.key}"', f'known_hosts = "{self.known_hosts}"',
                f'python = "{python or "/usr/bin/python3"}"', f'work_dir = "{h.work_dir}"',
                f'labels = {{ arch = "x86_64", board = "loopback-{h.name}" }}', f"env = {{ {envs} }}", extra, "",
            ]))
        return "\n".join(blocks)

    def restart(self, host: FakeHost) -> None:
        """Start a stopped host's sshd again (same port, key and config)."""
        if host.pid is None or not Path(f"/proc/{host.pid}").exists():
            _start(host.root)

    def stop(self) -> None:
        for h in self.hosts:
            h.stop()


def _start(hroot: Path) -> None:
    (hroot / "sshd.pid").unlink(missing_ok=True)
    subprocess.run([SSHD, "-f", str(hroot / "sshd_config"), "-E", str(hroot / "sshd.log")], check=True)
    for _ in range(100):
        if (hroot / "sshd.pid").exists():
            break
        time.sleep(0.05)
