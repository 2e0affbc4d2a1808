"""Lab host namespaces as "machines" that Ansible reaches over SSH: an sshd (Debian's
openssh-server) in each host namespace with its own config, host key and authorized_keys in a
temporary directory, listening on the host's underlay address; a key pair the test makes;
an inventory; ``ansible-playbook`` run from the switch namespace (the operator's seat on the
management network); the PLAY RECAP parsed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from netloom.lab import nsexec
from netloom.lab.state import HostRecord
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "deploy" / "ansible"
ANSIBLE_PLAYBOOK = ROOT / "build" / "ansible" / "bin" / "ansible-playbook"
SSHD = Path("/usr/sbin/sshd")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")

SSHD_CONFIG = """\
ListenAddress {address}:22
HostKey {dir}/ssh_host_ed25519_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile {dir}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
"""


def wheels() -> list[Path]:
    """The wheels ``make dist`` built, oldest version first."""
    return sorted((ROOT / "dist").glob("netloom-*-py3-none-any.whl"))


@dataclass
class Recap:
    """One ``PLAY RECAP`` line per host: ok, changed, unreachable, failed."""

    hosts: dict[str, tuple[int, int, int, int]]

    @classmethod
    def parse(cls, output: str) -> Recap:
        hosts: dict[str, tuple[int, int, int, int]] = {}
        for line in output.split("PLAY RECAP", 1)[-1].splitlines():
            m = RECAP.match(line.strip())
            if m:
                hosts[m[1]] = (int(m[2]), int(m[3]), int(m[4]), int(m[5]))
        return cls(hosts)

    def changed(self) -> int:
        return sum(v[1] for v in self.hosts.values())

    def failed(self) -> int:
        return sum(v[2] + v[3] for v in self.hosts.values())


@dataclass
class Machines:
    """The SSH side of the test: keys, one sshd per host namespace, the inventory."""

    dir: Path
    controller_ns: str
    sshd: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    def make_keys(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )

    def wheelhouse(self, wheel: Path, where: Path) -> None:
        """The wheel's dependencies as wheels in ``where`` (pip, from this machine's index)."""
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(where), str(wheel)],
            check=True,
            capture_output=True,
        )

    def start_sshd(self, host: HostRecord) -> None:
        """sshd in the host's namespace on its underlay address, port 22."""
        d = self.dir / host.name
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh_host_ed25519_key")],
            check=True,
        )
        (d / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        config = d / "sshd_config"
        config.write_text(SSHD_CONFIG.format(address=host.underlay_ip, dir=d))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        log = (d / "sshd.log").open("ab")
        self.sshd[host.name] = nsexec.popen(
            host.netns, [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log
        )
        log.close()
        wait_until(
            lambda: _listening(host.netns, host.underlay_ip),
            timeout=10,
            message=f"sshd in {host.netns}",
        )

    def inventory(self, groups: Mapping[str, Sequence[HostRecord]], root: Path) -> Path:
        """A YAML inventory: each host reached at its underlay address, its paths under
        ``root/<host>``."""
        hosts = {h.name: h for members in groups.values() for h in members}
        doc: dict[str, Any] = {
            "all": {
                "hosts": {
                    name: {"ansible_host": h.underlay_ip, "netloom_root": str(root / name)}
                    for name, h in hosts.items()
                },
                "children": {
                    g: {"hosts": {h.name: None for h in members}} for g, members in groups.items()
                },
            }
        }
        path = self.dir / "inventory.json"
        path.write_text(json.dumps(doc))
        return path

    def playbook(
        self, inventory: Path, extra: Mapping[str, Any], playbook: str, timeout: float = 600
    ) -> tuple[Recap, str]:
        """``ansible-playbook`` from the controller namespace; the recap and the output."""
        extra_file = self.dir / "extra.json"
        extra_file.write_text(json.dumps(dict(extra)))
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.dir / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(self.dir / "tmp"),
            "ANSIBLE_REMOTE_TMP": str(self.dir / "remote-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.key),
            "ANSIBLE_REMOTE_USER": "root",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s "
            "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        }
        done = nsexec.run(
            self.controller_ns,
            [
                str(ANSIBLE_PLAYBOOK),
                "-i",
                str(inventory),
                "-e",
                f"@{extra_file}",
                str(PLAYBOOKS / playbook),
            ],
            check=False,
            timeout=timeout,
            env=env,
        )
        output = done.stdout + done.stderr
        with (self.dir / f"{playbook}.log").open("a") as log:
            log.write(output)
        return Recap.parse(done.stdout), output

    def stop(self, namespaces: Sequence[str]) -> None:
        """Every process in the lab's namespaces (sshd, ssh masters, the services the
        playbook started), then nothing else."""
        for p in self.sshd.values():
            p.terminate()
        for p in self.sshd.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        procs = []
        for ns in namespaces:
            for pid in nsexec.pids_in(ns):
                try:
                    procs.append(psutil.Process(pid))
                    os.kill(pid, signal.SIGTERM)
                except (ProcessLookupError, psutil.NoSuchProcess):
                    pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def _listening(ns: str, address: str) -> bool:
    out = nsexec.run(ns, ["ss", "-Hltn", f"src {address}:22"], check=False).stdout
    return bool(out.strip())


__all__ = ["ANSIBLE_PLAYBOOK", "SSHD", "Machines", "Recap", "wheels"]
